/*
 * example.c - builds the shared test vectors of testdata/vectors with
 * unico_frame.h and prints each as "name hex" on one line. With the
 * argument "check" it instead exercises the encoder's error paths and
 * prints "ok" (exit status 1 on the first failure).
 *
 *     cc -std=c99 -Wall -Wextra -pedantic -o example example.c
 *     ./example
 */
#include <stdio.h>
#include <string.h>

#define UNICO_FRAME_IMPLEMENTATION
#include "unico_frame.h"

static void print_hex(const char *name, const uint8_t *p, size_t n)
{
    size_t i;
    printf("%s ", name);
    for (i = 0; i < n; i++)
        printf("%02x", p[i]);
    printf("\n");
}

static int failed;

#define EXPECT(call, want)                                                  \
    do {                                                                    \
        int got_ = (call);                                                  \
        if (got_ != (want)) {                                               \
            fprintf(stderr, "%s:%d: %s = %d, want %d\n", __FILE__, __LINE__, \
                    #call, got_, (want));                                   \
            failed = 1;                                                     \
        }                                                                   \
    } while (0)

static const uint8_t dev1[8] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
static const uint8_t dev2[8] = {0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x08};

static int vectors(void)
{
    static uint8_t buf[UNICO_FRAME_MAX_BYTES];
    unico_frame_writer w;
    size_t len, i;
    static const uint8_t mac8[8] = {0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17};
    static const uint8_t beacon16[16] = {0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
                                         0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf};
    uint8_t mac32[32];
    static const uint8_t ext[3] = {0x01, 0x02, 0x03};

    for (i = 0; i < 32; i++)
        mac32[i] = (uint8_t)(0xe0 + i);

    /* empty: a heartbeat without records. */
    EXPECT(unico_frame_begin(&w, buf, sizeof buf, dev1, 0xdeadbeefu, 0, 1000), UNICO_OK);
    EXPECT(unico_frame_finish(&w, &len), UNICO_OK);
    print_hex("empty", buf, len);

    /* sightings: one of each identifier size and kind. */
    EXPECT(unico_frame_begin(&w, buf, sizeof buf, dev2, 0x12345678u, 42, 3600000u), UNICO_OK);
    EXPECT(unico_frame_add_sighting(&w, UNICO_KIND_MAC_HASH, mac8, 8, -60, 3, 1500), UNICO_OK);
    EXPECT(unico_frame_add_sighting(&w, UNICO_KIND_BEACON_ID, beacon16, 16, -72, 1, 0), UNICO_OK);
    EXPECT(unico_frame_add_sighting(&w, UNICO_KIND_MAC_HASH, mac32, 32, -91, 0, 250), UNICO_OK);
    EXPECT(unico_frame_finish(&w, &len), UNICO_OK);
    print_hex("sightings", buf, len);

    /* mixed: counter, shelf pick and put, health and an extension, with an
     * uptime above 2^32 ms. */
    EXPECT(unico_frame_begin(&w, buf, sizeof buf, dev2, 0x12345678u, 43, 5000000000ull), UNICO_OK);
    EXPECT(unico_frame_add_counter(&w, 1, 5, 3, 60000), UNICO_OK);
    EXPECT(unico_frame_add_shelf(&w, 12, UNICO_SHELF_PICK, 2, 10, "SKU-12345", 9), UNICO_OK);
    EXPECT(unico_frame_add_shelf(&w, 12, UNICO_SHELF_PUT, 1, 0, "A7", 2), UNICO_OK);
    EXPECT(unico_frame_add_health(&w, 87, -55, 81234, "1.4.2-rc1", 9), UNICO_OK);
    EXPECT(unico_frame_add_extension(&w, 0x80, ext, 3), UNICO_OK);
    EXPECT(unico_frame_finish(&w, &len), UNICO_OK);
    print_hex("mixed", buf, len);

    /* max_records: 128 counter records, door i, in i, out 2i. */
    EXPECT(unico_frame_begin(&w, buf, sizeof buf, dev1, 7, 1, 100000), UNICO_OK);
    for (i = 0; i < UNICO_FRAME_MAX_RECORDS; i++)
        EXPECT(unico_frame_add_counter(&w, (uint8_t)i, (uint16_t)i, (uint16_t)(2 * i), (uint32_t)i), UNICO_OK);
    EXPECT(unico_frame_add_counter(&w, 0, 1, 1, 0), UNICO_E_FULL);
    EXPECT(unico_frame_finish(&w, &len), UNICO_OK);
    print_hex("max_records", buf, len);
    return failed;
}

static int check(void)
{
    static uint8_t buf[UNICO_FRAME_MAX_BYTES + 16];
    uint8_t small[40];
    unico_frame_writer w;
    size_t len, i, n;
    uint8_t id[40];
    char sku[70];
    memset(id, 0x42, sizeof id);
    memset(sku, 'X', sizeof sku);

    /* begin */
    EXPECT(unico_frame_begin(NULL, buf, sizeof buf, dev1, 1, 0, 0), UNICO_E_ARG);
    EXPECT(unico_frame_begin(&w, NULL, sizeof buf, dev1, 1, 0, 0), UNICO_E_ARG);
    EXPECT(unico_frame_begin(&w, buf, 33, dev1, 1, 0, 0), UNICO_E_SPACE);
    EXPECT(unico_frame_add_counter(&w, 0, 1, 1, 0), UNICO_E_STATE);
    EXPECT(unico_frame_finish(&w, &len), UNICO_E_STATE);

    /* field ranges */
    EXPECT(unico_frame_begin(&w, buf, sizeof buf, dev1, 1, 0, 1000), UNICO_OK);
    EXPECT(unico_frame_add_sighting(&w, 0, id, 7, -50, 0, 0), UNICO_E_ARG);
    EXPECT(unico_frame_add_sighting(&w, 0, id, 33, -50, 0, 0), UNICO_E_ARG);
    EXPECT(unico_frame_add_sighting(&w, 2, id, 8, -50, 0, 0), UNICO_E_ARG);
    EXPECT(unico_frame_add_sighting(&w, 0, NULL, 8, -50, 0, 0), UNICO_E_ARG);
    EXPECT(unico_frame_add_sighting(&w, 0, id, 8, -50, 0, 1001), UNICO_E_ARG);
    EXPECT(unico_frame_add_shelf(&w, 1, 2, 1, 0, "A", 1), UNICO_E_ARG);
    EXPECT(unico_frame_add_shelf(&w, 1, 0, 0, 0, "A", 1), UNICO_E_ARG);
    EXPECT(unico_frame_add_shelf(&w, 1, 0, 1, 0, "A B", 3), UNICO_E_ARG);
    EXPECT(unico_frame_add_shelf(&w, 1, 0, 1, 0, sku, 65), UNICO_E_ARG);
    EXPECT(unico_frame_add_shelf(&w, 1, 0, 1, 0, "", 0), UNICO_E_ARG);
    EXPECT(unico_frame_add_health(&w, 101, 0, 0, "1", 1), UNICO_E_ARG);
    EXPECT(unico_frame_add_health(&w, 50, 0, 0, "1\n", 2), UNICO_E_ARG);
    EXPECT(unico_frame_add_health(&w, 50, 0, 0, sku, 33), UNICO_E_ARG);
    EXPECT(unico_frame_add_extension(&w, 0x7f, id, 1), UNICO_E_ARG);
    EXPECT(unico_frame_add_extension(&w, 0x80, id, 256), UNICO_E_ARG);
    EXPECT(unico_frame_finish(&w, &len), UNICO_OK);
    EXPECT((int)len, 34);
    EXPECT(unico_frame_add_counter(&w, 0, 1, 1, 0), UNICO_E_STATE);

    /* a small buffer runs out of space; the frame so far stays valid */
    EXPECT(unico_frame_begin(&w, small, sizeof small, dev1, 1, 0, 0), UNICO_OK);
    EXPECT(unico_frame_add_sighting(&w, 0, id, 8, -50, 0, 0), UNICO_E_SPACE);
    EXPECT(unico_frame_finish(&w, &len), UNICO_OK);
    EXPECT((int)len, 34);

    /* 4096 bytes: 97 sightings of 42 bytes fill 4108 > 4096 */
    EXPECT(unico_frame_begin(&w, buf, sizeof buf, dev1, 1, 0, 0), UNICO_OK);
    n = 0;
    for (i = 0; i < 200; i++) {
        int rc = unico_frame_add_sighting(&w, 0, id, 32, -50, 0, 0);
        if (rc == UNICO_E_FULL)
            break;
        EXPECT(rc, UNICO_OK);
        n++;
    }
    EXPECT((int)n, (4096 - 34) / 42);
    EXPECT(unico_frame_finish(&w, &len), UNICO_OK);
    EXPECT(len <= UNICO_FRAME_MAX_BYTES, 1);

    /* CRC-32C check value */
    EXPECT(unico_crc32c(0, (const uint8_t *)"123456789", 9) == 0xE3069283u, 1);
    if (!failed)
        printf("ok\n");
    return failed;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "check") == 0)
        return check();
    return vectors();
}
