/*
 * unico_frame.h - encoder for Unico device frames, version 1 (see FRAME.md).
 *
 * Single header, C99, no allocation, no dependency beyond <stddef.h> and
 * <stdint.h>. In exactly one .c file:
 *
 *     #define UNICO_FRAME_IMPLEMENTATION
 *     #include "unico_frame.h"
 *
 * Usage:
 *
 *     uint8_t buf[UNICO_FRAME_MAX_BYTES];
 *     unico_frame_writer w;
 *     size_t len;
 *     unico_frame_begin(&w, buf, sizeof buf, dev_id, boot_id, seq++, uptime_ms);
 *     if (unico_frame_add_sighting(&w, UNICO_KIND_MAC_HASH, h, 16, rssi, zone, age)
 *             == UNICO_E_FULL) {
 *         ... finish, send, begin the next frame and add the record again ...
 *     }
 *     unico_frame_finish(&w, &len);   // buf[0..len) is the MQTT payload
 *
 * Every function checks its arguments and the space left and returns
 * UNICO_OK or a negative UNICO_E_* code. A failed add leaves the writer as
 * it was, so the frame built so far can still be finished and sent.
 */
#ifndef UNICO_FRAME_H
#define UNICO_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UNICO_FRAME_VERSION 1
#define UNICO_FRAME_MAX_BYTES 4096
#define UNICO_FRAME_MAX_RECORDS 128
#define UNICO_FRAME_HEADER_BYTES 30
#define UNICO_FRAME_CRC_BYTES 4
#define UNICO_ID_MIN 8
#define UNICO_ID_MAX 32
#define UNICO_SKU_MAX 64
#define UNICO_FIRMWARE_MAX 32
#define UNICO_BATTERY_UNKNOWN 255

/* Identifier kinds of a sighting. */
#define UNICO_KIND_MAC_HASH 0
#define UNICO_KIND_BEACON_ID 1

/* Shelf actions. */
#define UNICO_SHELF_PICK 0
#define UNICO_SHELF_PUT 1

/* Result codes. */
#define UNICO_OK 0
#define UNICO_E_ARG (-1)   /* NULL pointer or a field outside its range */
#define UNICO_E_SPACE (-2) /* the caller's buffer is too small */
#define UNICO_E_FULL (-3)  /* the frame reached 4096 bytes or 128 records */
#define UNICO_E_STATE (-4) /* writer not begun, or already finished */

typedef struct {
    uint8_t *buf;
    size_t cap;       /* usable bytes: min(buffer size, 4096) */
    size_t len;       /* bytes written so far */
    uint64_t uptime;  /* the header's uptime, to check record ages */
    uint8_t count;    /* records written */
    uint8_t state;    /* 0 unused, 1 open, 2 finished */
} unico_frame_writer;

/* unico_crc32c continues a CRC-32C (Castagnoli) over n bytes. Start with
 * crc = 0: unico_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t unico_crc32c(uint32_t crc, const uint8_t *p, size_t n);

/* unico_frame_begin writes the header. boot_id must be drawn at random at
 * every boot; seq counts frames from 0 since boot. */
int unico_frame_begin(unico_frame_writer *w, uint8_t *buf, size_t buf_size,
                      const uint8_t device_id[8], uint32_t boot_id,
                      uint32_t seq, uint64_t uptime_ms);

/* A sighting: kind UNICO_KIND_*, id of 8-32 bytes (already hashed), age_ms
 * how long before uptime_ms it happened (at most uptime_ms). */
int unico_frame_add_sighting(unico_frame_writer *w, uint8_t kind,
                             const uint8_t *id, size_t id_len, int8_t rssi,
                             uint8_t zone, uint32_t age_ms);

/* People counted at a door since the previous counter record. */
int unico_frame_add_counter(unico_frame_writer *w, uint8_t door, uint16_t in,
                            uint16_t out, uint32_t age_ms);

/* Items picked (UNICO_SHELF_PICK) or put (UNICO_SHELF_PUT); count >= 1; sku
 * 1-64 printable ASCII bytes without space. */
int unico_frame_add_shelf(unico_frame_writer *w, uint16_t shelf,
                          uint8_t action, uint16_t count, uint32_t age_ms,
                          const char *sku, size_t sku_len);

/* The device's health: battery 0-100 or UNICO_BATTERY_UNKNOWN; firmware
 * version 1-32 printable ASCII bytes. */
int unico_frame_add_health(unico_frame_writer *w, uint8_t battery,
                           int8_t wifi_rssi, uint32_t free_heap,
                           const char *firmware, size_t firmware_len);

/* An extension record (type 0x80-0xFF) that readers may skip. */
int unico_frame_add_extension(unico_frame_writer *w, uint8_t type,
                              const uint8_t *body, size_t body_len);

/* unico_frame_finish writes the record count and the checksum and stores
 * the frame's length in *out_len. */
int unico_frame_finish(unico_frame_writer *w, size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif /* UNICO_FRAME_H */

#ifdef UNICO_FRAME_IMPLEMENTATION
#ifndef UNICO_FRAME_IMPLEMENTED
#define UNICO_FRAME_IMPLEMENTED

uint32_t unico_crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
    size_t i;
    int k;
    crc = ~crc;
    for (i = 0; i < n; i++) {
        crc ^= p[i];
        for (k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void unico__u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void unico__u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void unico__u64(uint8_t *p, uint64_t v)
{
    unico__u32(p, (uint32_t)v);
    unico__u32(p + 4, (uint32_t)(v >> 32));
}

static int unico__ascii(const char *s, size_t n, uint8_t lo)
{
    size_t i;
    for (i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c < lo || c > 0x7E)
            return 0;
    }
    return 1;
}

/* unico__reserve checks that a record of body_len bytes fits and returns
 * where its body goes, or NULL with *err set. */
static uint8_t *unico__reserve(unico_frame_writer *w, uint8_t type,
                               size_t body_len, int *err)
{
    uint8_t *p;
    if (w == NULL || w->state != 1) {
        *err = UNICO_E_STATE;
        return NULL;
    }
    if (body_len > 255) {
        *err = UNICO_E_ARG;
        return NULL;
    }
    if (w->count >= UNICO_FRAME_MAX_RECORDS) {
        *err = UNICO_E_FULL;
        return NULL;
    }
    if (2 + body_len + UNICO_FRAME_CRC_BYTES > w->cap - w->len) {
        /* Room the frame could still have if the buffer were larger. */
        *err = (w->cap < UNICO_FRAME_MAX_BYTES) ? UNICO_E_SPACE : UNICO_E_FULL;
        return NULL;
    }
    p = w->buf + w->len;
    p[0] = type;
    p[1] = (uint8_t)body_len;
    w->len += 2 + body_len;
    w->count++;
    *err = UNICO_OK;
    return p + 2;
}

int unico_frame_begin(unico_frame_writer *w, uint8_t *buf, size_t buf_size,
                      const uint8_t device_id[8], uint32_t boot_id,
                      uint32_t seq, uint64_t uptime_ms)
{
    size_t i;
    if (w == NULL || buf == NULL || device_id == NULL)
        return UNICO_E_ARG;
    w->state = 0;
    if (buf_size < UNICO_FRAME_HEADER_BYTES + UNICO_FRAME_CRC_BYTES)
        return UNICO_E_SPACE;
    w->buf = buf;
    w->cap = buf_size < UNICO_FRAME_MAX_BYTES ? buf_size : UNICO_FRAME_MAX_BYTES;
    buf[0] = 0x55; /* 'U' */
    buf[1] = 0x46; /* 'F' */
    buf[2] = UNICO_FRAME_VERSION;
    buf[3] = 1; /* frame type: report */
    for (i = 0; i < 8; i++)
        buf[4 + i] = device_id[i];
    unico__u32(buf + 12, boot_id);
    unico__u32(buf + 16, seq);
    unico__u64(buf + 20, uptime_ms);
    buf[28] = 0; /* record count, set by finish */
    buf[29] = 0; /* flags */
    w->len = UNICO_FRAME_HEADER_BYTES;
    w->uptime = uptime_ms;
    w->count = 0;
    w->state = 1;
    return UNICO_OK;
}

int unico_frame_add_sighting(unico_frame_writer *w, uint8_t kind,
                             const uint8_t *id, size_t id_len, int8_t rssi,
                             uint8_t zone, uint32_t age_ms)
{
    uint8_t *p;
    size_t i;
    int err;
    if (id == NULL || id_len < UNICO_ID_MIN || id_len > UNICO_ID_MAX ||
        kind > UNICO_KIND_BEACON_ID || (w != NULL && age_ms > w->uptime))
        return UNICO_E_ARG;
    p = unico__reserve(w, 0x01, 8 + id_len, &err);
    if (p == NULL)
        return err;
    p[0] = kind;
    p[1] = (uint8_t)id_len;
    for (i = 0; i < id_len; i++)
        p[2 + i] = id[i];
    p[2 + id_len] = (uint8_t)rssi;
    p[3 + id_len] = zone;
    unico__u32(p + 4 + id_len, age_ms);
    return UNICO_OK;
}

int unico_frame_add_counter(unico_frame_writer *w, uint8_t door, uint16_t in,
                            uint16_t out, uint32_t age_ms)
{
    uint8_t *p;
    int err;
    if (w != NULL && age_ms > w->uptime)
        return UNICO_E_ARG;
    p = unico__reserve(w, 0x02, 9, &err);
    if (p == NULL)
        return err;
    p[0] = door;
    unico__u16(p + 1, in);
    unico__u16(p + 3, out);
    unico__u32(p + 5, age_ms);
    return UNICO_OK;
}

int unico_frame_add_shelf(unico_frame_writer *w, uint16_t shelf,
                          uint8_t action, uint16_t count, uint32_t age_ms,
                          const char *sku, size_t sku_len)
{
    uint8_t *p;
    size_t i;
    int err;
    if (sku == NULL || sku_len < 1 || sku_len > UNICO_SKU_MAX ||
        !unico__ascii(sku, sku_len, 0x21) || action > UNICO_SHELF_PUT ||
        count == 0 || (w != NULL && age_ms > w->uptime))
        return UNICO_E_ARG;
    p = unico__reserve(w, 0x03, 10 + sku_len, &err);
    if (p == NULL)
        return err;
    unico__u16(p, shelf);
    p[2] = action;
    unico__u16(p + 3, count);
    unico__u32(p + 5, age_ms);
    p[9] = (uint8_t)sku_len;
    for (i = 0; i < sku_len; i++)
        p[10 + i] = (uint8_t)sku[i];
    return UNICO_OK;
}

int unico_frame_add_health(unico_frame_writer *w, uint8_t battery,
                           int8_t wifi_rssi, uint32_t free_heap,
                           const char *firmware, size_t firmware_len)
{
    uint8_t *p;
    size_t i;
    int err;
    if (firmware == NULL || firmware_len < 1 ||
        firmware_len > UNICO_FIRMWARE_MAX ||
        !unico__ascii(firmware, firmware_len, 0x20) ||
        (battery > 100 && battery != UNICO_BATTERY_UNKNOWN))
        return UNICO_E_ARG;
    p = unico__reserve(w, 0x04, 7 + firmware_len, &err);
    if (p == NULL)
        return err;
    p[0] = battery;
    p[1] = (uint8_t)wifi_rssi;
    unico__u32(p + 2, free_heap);
    p[6] = (uint8_t)firmware_len;
    for (i = 0; i < firmware_len; i++)
        p[7 + i] = (uint8_t)firmware[i];
    return UNICO_OK;
}

int unico_frame_add_extension(unico_frame_writer *w, uint8_t type,
                              const uint8_t *body, size_t body_len)
{
    uint8_t *p;
    size_t i;
    int err;
    if (type < 0x80 || (body == NULL && body_len > 0))
        return UNICO_E_ARG;
    p = unico__reserve(w, type, body_len, &err);
    if (p == NULL)
        return err;
    for (i = 0; i < body_len; i++)
        p[i] = body[i];
    return UNICO_OK;
}

int unico_frame_finish(unico_frame_writer *w, size_t *out_len)
{
    uint32_t crc;
    if (w == NULL || out_len == NULL)
        return UNICO_E_ARG;
    if (w->state != 1)
        return UNICO_E_STATE;
    /* reserve kept room for the checksum */
    w->buf[28] = w->count;
    crc = unico_crc32c(0, w->buf, w->len);
    unico__u32(w->buf + w->len, crc);
    w->len += UNICO_FRAME_CRC_BYTES;
    w->state = 2;
    *out_len = w->len;
    return UNICO_OK;
}

#endif /* UNICO_FRAME_IMPLEMENTED */
#endif /* UNICO_FRAME_IMPLEMENTATION */
