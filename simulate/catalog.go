package simulate

// Product is one catalogue item. Prices are in minor units (pence).
type Product struct {
	ID       string
	SKU      string
	Name     string
	Category string
	Price    int64
	// With lists indexes of products often bought together with this one.
	With []int
}

// catalogue is the built-in product list: 60 products in 10 categories.
// Companion links (bought together) are set up in init from companionPairs.
var catalogue = []Product{
	// bedding
	{ID: "P001", SKU: "BED-PIL-STD", Name: "Standard pillow", Category: "bedding", Price: 1200},
	{ID: "P002", SKU: "BED-PIL-MEM", Name: "Memory foam pillow", Category: "bedding", Price: 3500},
	{ID: "P003", SKU: "BED-PIL-DWN", Name: "Duck down pillow", Category: "bedding", Price: 4500},
	{ID: "P004", SKU: "BED-DUV-105", Name: "Duvet 10.5 tog", Category: "bedding", Price: 4000},
	{ID: "P005", SKU: "BED-DUV-45", Name: "Summer duvet 4.5 tog", Category: "bedding", Price: 3000},
	{ID: "P006", SKU: "BED-MPR-DBL", Name: "Mattress protector double", Category: "bedding", Price: 2200},
	// bed linen
	{ID: "P007", SKU: "LIN-PCV-WHT", Name: "Pillow cover white (pair)", Category: "bed linen", Price: 900},
	{ID: "P008", SKU: "LIN-PCV-GRY", Name: "Pillow cover grey (pair)", Category: "bed linen", Price: 900},
	{ID: "P009", SKU: "LIN-PCV-SLK", Name: "Silk pillow cover", Category: "bed linen", Price: 2500},
	{ID: "P010", SKU: "LIN-DCV-DBL", Name: "Duvet cover double", Category: "bed linen", Price: 3200},
	{ID: "P011", SKU: "LIN-FSH-DBL", Name: "Fitted sheet double", Category: "bed linen", Price: 1800},
	{ID: "P012", SKU: "LIN-THR-KNT", Name: "Knitted throw", Category: "bed linen", Price: 2800},
	// bath
	{ID: "P013", SKU: "BTH-TWL-HND", Name: "Hand towel", Category: "bath", Price: 600},
	{ID: "P014", SKU: "BTH-TWL-BTH", Name: "Bath towel", Category: "bath", Price: 1200},
	{ID: "P015", SKU: "BTH-MAT-CTN", Name: "Cotton bath mat", Category: "bath", Price: 1000},
	{ID: "P016", SKU: "BTH-ROB-WAF", Name: "Waffle bathrobe", Category: "bath", Price: 3000},
	{ID: "P017", SKU: "BTH-DSP-CER", Name: "Ceramic soap dispenser", Category: "bath", Price: 800},
	{ID: "P018", SKU: "BTH-CUR-SHW", Name: "Shower curtain", Category: "bath", Price: 1500},
	// kitchen
	{ID: "P019", SKU: "KIT-KNF-CHF", Name: "Chef's knife", Category: "kitchen", Price: 3500},
	{ID: "P020", SKU: "KIT-BRD-OAK", Name: "Oak chopping board", Category: "kitchen", Price: 2000},
	{ID: "P021", SKU: "KIT-PAN-FRY", Name: "Frying pan 28cm", Category: "kitchen", Price: 2800},
	{ID: "P022", SKU: "KIT-PAN-SAU", Name: "Saucepan set", Category: "kitchen", Price: 6000},
	{ID: "P023", SKU: "KIT-UTN-SET", Name: "Utensil set", Category: "kitchen", Price: 1500},
	{ID: "P024", SKU: "KIT-TEA-TWL", Name: "Tea towels (3)", Category: "kitchen", Price: 700},
	// tableware
	{ID: "P025", SKU: "TAB-PLT-DIN", Name: "Dinner plates (4)", Category: "tableware", Price: 2400},
	{ID: "P026", SKU: "TAB-BWL-CER", Name: "Cereal bowls (4)", Category: "tableware", Price: 1800},
	{ID: "P027", SKU: "TAB-MUG-STN", Name: "Stoneware mug", Category: "tableware", Price: 600},
	{ID: "P028", SKU: "TAB-GLS-WIN", Name: "Wine glasses (4)", Category: "tableware", Price: 2000},
	{ID: "P029", SKU: "TAB-CUT-SET", Name: "Cutlery set 16 pieces", Category: "tableware", Price: 3000},
	{ID: "P030", SKU: "TAB-NAP-LIN", Name: "Linen napkins (4)", Category: "tableware", Price: 1400},
	// lighting
	{ID: "P031", SKU: "LGT-LMP-TBL", Name: "Table lamp", Category: "lighting", Price: 3500},
	{ID: "P032", SKU: "LGT-SHD-LIN", Name: "Linen lampshade", Category: "lighting", Price: 1800},
	{ID: "P033", SKU: "LGT-BLB-LED", Name: "LED bulb warm white", Category: "lighting", Price: 400},
	{ID: "P034", SKU: "LGT-TLT-HLD", Name: "T-light holder", Category: "lighting", Price: 500},
	{ID: "P035", SKU: "LGT-CDL-SCN", Name: "Scented candle", Category: "lighting", Price: 1200},
	{ID: "P036", SKU: "LGT-FRL-LED", Name: "Fairy lights", Category: "lighting", Price: 1000},
	// decor
	{ID: "P037", SKU: "DEC-CSH-VLV", Name: "Velvet cushion", Category: "decor", Price: 1800},
	{ID: "P038", SKU: "DEC-CCV-VLV", Name: "Velvet cushion cover", Category: "decor", Price: 1000},
	{ID: "P039", SKU: "DEC-FRM-A4", Name: "Photo frame A4", Category: "decor", Price: 900},
	{ID: "P040", SKU: "DEC-MIR-RND", Name: "Round mirror", Category: "decor", Price: 4500},
	{ID: "P041", SKU: "DEC-VAS-GLS", Name: "Glass vase", Category: "decor", Price: 1600},
	{ID: "P042", SKU: "DEC-CLK-WAL", Name: "Wall clock", Category: "decor", Price: 2200},
	// storage
	{ID: "P043", SKU: "STO-BSK-WIC", Name: "Wicker basket", Category: "storage", Price: 1500},
	{ID: "P044", SKU: "STO-BOX-VAC", Name: "Vacuum storage bags", Category: "storage", Price: 1200},
	{ID: "P045", SKU: "STO-HNG-VLV", Name: "Velvet hangers (10)", Category: "storage", Price: 1000},
	{ID: "P046", SKU: "STO-JAR-GLS", Name: "Glass storage jar", Category: "storage", Price: 500},
	{ID: "P047", SKU: "STO-SHF-FLT", Name: "Floating shelf", Category: "storage", Price: 2000},
	{ID: "P048", SKU: "STO-ORG-DRW", Name: "Drawer organiser", Category: "storage", Price: 800},
	// garden
	{ID: "P049", SKU: "GRD-POT-TER", Name: "Terracotta pot", Category: "garden", Price: 900},
	{ID: "P050", SKU: "GRD-CMP-MIX", Name: "Compost 20L", Category: "garden", Price: 600},
	{ID: "P051", SKU: "GRD-CAN-WAT", Name: "Watering can", Category: "garden", Price: 1300},
	{ID: "P052", SKU: "GRD-CSH-OUT", Name: "Outdoor seat cushion", Category: "garden", Price: 1600},
	{ID: "P053", SKU: "GRD-LNT-SOL", Name: "Solar lantern", Category: "garden", Price: 1400},
	{ID: "P054", SKU: "GRD-GLV-PR", Name: "Gardening gloves", Category: "garden", Price: 500},
	// gifts
	{ID: "P055", SKU: "GFT-CRD-BDY", Name: "Birthday card", Category: "gifts", Price: 300},
	{ID: "P056", SKU: "GFT-WRP-RLL", Name: "Gift wrap roll", Category: "gifts", Price: 400},
	{ID: "P057", SKU: "GFT-BAG-MED", Name: "Gift bag medium", Category: "gifts", Price: 250},
	{ID: "P058", SKU: "GFT-VCH-25", Name: "Gift card 25", Category: "gifts", Price: 2500},
	{ID: "P059", SKU: "GFT-SET-BTH", Name: "Bath gift set", Category: "gifts", Price: 2000},
	{ID: "P060", SKU: "GFT-SET-CDL", Name: "Candle gift set", Category: "gifts", Price: 2200},
}

// companionPairs are products bought together, as indexes into catalogue.
var companionPairs = [][2]int{
	{0, 6}, {0, 7}, {1, 8}, {1, 6}, {2, 8}, {2, 7}, // pillows and pillow covers
	{3, 9}, {4, 9}, {3, 10}, {5, 10}, // duvets, covers, sheets
	{13, 12}, {13, 14}, {15, 13}, // towels and bath mat
	{18, 19}, {20, 22}, {21, 22}, {23, 18}, // kitchen
	{24, 25}, {24, 28}, {27, 29}, {26, 26}, // tableware
	{30, 31}, {30, 32}, {33, 34}, {35, 32}, // lamps, shades, bulbs, candles
	{36, 37}, {38, 40}, // cushions and covers, frames and vases
	{42, 44}, {45, 42}, {46, 47}, // storage
	{48, 49}, {48, 50}, {51, 52}, // garden
	{54, 55}, {54, 56}, {57, 55}, {58, 55}, {59, 56}, // gifts with cards and wrap
}

func init() {
	for _, p := range companionPairs {
		if p[0] == p[1] {
			continue
		}
		catalogue[p[0]].With = append(catalogue[p[0]].With, p[1])
		catalogue[p[1]].With = append(catalogue[p[1]].With, p[0])
	}
}

// Catalogue returns a copy of the built-in product catalogue.
func Catalogue() []Product {
	out := make([]Product, len(catalogue))
	copy(out, catalogue)
	return out
}
