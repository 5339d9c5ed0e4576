/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * C smoke test of the mecom ABI, compiled against include/mecom.h and linked
 * with the static library, run under ASan/UBSan and valgrind (Makefile).
 * It does what QEMU's multifd threads do: encode pages at host + offsets,
 * decode into another block, compare, and check that broken frames fail with
 * a status while the destination stays untouched.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mecom.h"

#define PAGE 4096u
#define NPAGES 128u

static int failures;

#define CHECK(cond, ...) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__); \
            fprintf(stderr, "\n"); \
            failures++; \
        } \
    } while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* One page of a class chosen by i: zero, fill, sparse, ints, text, random. */
static void fill_page(uint8_t *p, unsigned i)
{
    static const char text[] = "multifd channel sends pages; the guest keeps running. ";
    unsigned k;

    memset(p, 0, PAGE);
    switch (i % 6) {
    case 0:
        break;
    case 1:
        for (k = 0; k < PAGE; k += 4) {
            memcpy(p + k, "\x11\x22\x33\x44", 4);
        }
        break;
    case 2:
        for (k = 0; k < 20; k++) {
            p[next() % PAGE] = (uint8_t)next();
        }
        break;
    case 3:
        for (k = 0; k < PAGE; k += 4) {
            uint32_t v = (uint32_t)(next() % 1000);
            memcpy(p + k, &v, 4);
        }
        break;
    case 4:
        for (k = 0; k < PAGE; k++) {
            p[k] = (uint8_t)text[k % (sizeof(text) - 1)];
        }
        break;
    default:
        for (k = 0; k < PAGE; k += 8) {
            uint64_t v = next();
            memcpy(p + k, &v, 8);
        }
    }
}

/*
 * A frame in parts, the way QEMU's glue moves it: the sender's buffer holds
 * the head and the payloads that are not raw, raw pages go out from their
 * place; the receiver reads the head, then every payload either straight
 * into its page or into its buffer.  The wire is simulated by one byte
 * stream.
 */
static void parts_round_trip(const mecom_config *cfg, const uint8_t *src,
                             uint8_t *dst, const uint64_t *offsets)
{
    size_t cap = mecom_max_frame_len(NPAGES, PAGE);
    uint8_t *buf = malloc(cap), *wire = malloc(cap), *rbuf = malloc(cap);
    uint32_t lens[NPAGES];
    mecom_encoder *enc = NULL;
    mecom_decoder *dec = NULL;
    size_t len = 0, head = 32 + 4 * NPAGES, wlen, bpos, rpos, buffered = 0;
    unsigned i, in_place = 0, round;
    mecom_status st;

    CHECK(mecom_encoder_new(cfg, &enc) == MECOM_STATUS_OK, "parts encoder");
    CHECK(mecom_decoder_new(cfg, &dec) == MECOM_STATUS_OK, "parts decoder");
    for (round = 0; round < 2; round++) {
        st = mecom_encoder_encode_parts(enc, src, offsets, NPAGES, buf, cap,
                                        &len, lens);
        CHECK(st == MECOM_STATUS_OK, "encode_parts: %s", mecom_status_str(st));
        memcpy(wire, buf, head);
        wlen = head;
        bpos = head;
        for (i = 0; i < NPAGES; i++) {
            if (lens[i] == MECOM_PAYLOAD_IN_PLACE) {
                memcpy(wire + wlen, src + offsets[i], PAGE);
                wlen += PAGE;
                in_place++;
            } else {
                memcpy(wire + wlen, buf + bpos, lens[i]);
                wlen += lens[i];
                bpos += lens[i];
            }
        }
        CHECK(bpos == len, "parts: %zu buffered bytes, encoder said %zu", bpos, len);

        memset(dst, 0xAA, (size_t)NPAGES * 2 * PAGE);
        memcpy(rbuf, wire, head);
        st = mecom_decoder_begin_parts(dec, rbuf, head, NPAGES, lens, &buffered);
        CHECK(st == MECOM_STATUS_OK, "begin_parts: %s", mecom_status_str(st));
        rpos = head;
        bpos = head;
        for (i = 0; i < NPAGES; i++) {
            if (lens[i] == MECOM_PAYLOAD_IN_PLACE) {
                memcpy(dst + offsets[i], wire + rpos, PAGE);
                rpos += PAGE;
            } else {
                memcpy(rbuf + bpos, wire + rpos, lens[i]);
                rpos += lens[i];
                bpos += lens[i];
            }
        }
        CHECK(rpos == wlen && bpos == buffered, "parts: read %zu of %zu", rpos, wlen);
        st = mecom_decoder_finish_parts(dec, rbuf, buffered, dst, offsets, NPAGES);
        CHECK(st == MECOM_STATUS_OK, "finish_parts: %s: %s", mecom_status_str(st),
              mecom_decoder_last_error(dec));
        for (i = 0; i < NPAGES; i++) {
            CHECK(memcmp(src + offsets[i], dst + offsets[i], PAGE) == 0,
                  "parts round %u page %u differs", round, i);
        }
    }
    CHECK(in_place > 0, "no page went in place");
    /* finish without begin is a status */
    st = mecom_decoder_finish_parts(dec, rbuf, buffered, dst, offsets, NPAGES);
    CHECK(st == MECOM_STATUS_INVALID_ARGUMENT, "finish without begin: %s",
          mecom_status_str(st));
    mecom_encoder_free(enc);
    mecom_decoder_free(dec);
    free(buf);
    free(wire);
    free(rbuf);
}

int main(void)
{
    mecom_config cfg;
    mecom_encoder *enc = NULL;
    mecom_decoder *dec = NULL;
    mecom_counters counters;
    uint64_t offsets[NPAGES];
    size_t cap = mecom_max_frame_len(NPAGES, PAGE);
    size_t len = 0;
    uint8_t *src = malloc((size_t)NPAGES * 2 * PAGE);
    uint8_t *dst = calloc((size_t)NPAGES * 2, PAGE);
    uint8_t *frame = malloc(cap);
    unsigned i, round;
    mecom_status st;

    if (!src || !dst || !frame) {
        return 2;
    }
    printf("mecom %s (header %d.%d.%d)\n", mecom_version(), MECOM_VERSION_MAJOR,
           MECOM_VERSION_MINOR, MECOM_VERSION_PATCH);
    mecom_config_init(&cfg);
    CHECK(cfg.page_size == PAGE && cfg.max_pages == NPAGES, "defaults");
    CHECK(cap > NPAGES * PAGE, "max frame len %zu", cap);

    st = mecom_encoder_new(&cfg, &enc);
    CHECK(st == MECOM_STATUS_OK && enc, "encoder_new: %s", mecom_status_str(st));
    st = mecom_decoder_new(&cfg, &dec);
    CHECK(st == MECOM_STATUS_OK && dec, "decoder_new: %s", mecom_status_str(st));

    for (i = 0; i < NPAGES; i++) {
        /* every other page of the block, like a sparse dirty set */
        offsets[i] = (uint64_t)i * 2 * PAGE + PAGE;
        fill_page(src + offsets[i], i);
    }

    for (round = 0; round < 4; round++) {
        mecom_link_stats stats = { 0 };

        stats.bandwidth = round < 2 ? 0 : 125000000;
        stats.channels = 2;
        st = mecom_encoder_update_stats(enc, &stats);
        CHECK(st == MECOM_STATUS_OK, "update_stats");
        {
            /* a zeroed Linux struct tcp_info, as QEMU's glue passes it */
            uint8_t tcp_info[232] = { 0 };

            st = mecom_encoder_update_tcp_info(enc, round * 1000000ULL,
                                               tcp_info, sizeof(tcp_info));
            CHECK(st == MECOM_STATUS_OK, "update_tcp_info");
            st = mecom_encoder_update_tcp_info(enc, 0, tcp_info, 100);
            CHECK(st == MECOM_STATUS_INVALID_ARGUMENT,
                  "update_tcp_info with 100 bytes: %s", mecom_status_str(st));
        }
        st = mecom_encoder_encode(enc, src, offsets, NPAGES, frame, cap, &len);
        CHECK(st == MECOM_STATUS_OK, "encode: %s: %s", mecom_status_str(st),
              mecom_encoder_last_error(enc));
        CHECK(len > 0 && len < (size_t)NPAGES * PAGE, "frame length %zu", len);
        st = mecom_decoder_decode(dec, frame, len, dst, offsets, NPAGES);
        CHECK(st == MECOM_STATUS_OK, "decode: %s: %s", mecom_status_str(st),
              mecom_decoder_last_error(dec));
        for (i = 0; i < NPAGES; i++) {
            CHECK(memcmp(src + offsets[i], dst + offsets[i], PAGE) == 0,
                  "round %u page %u differs", round, i);
        }
    }

    st = mecom_encoder_counters(enc, &counters);
    CHECK(st == MECOM_STATUS_OK && counters.pages == 4 * NPAGES, "counters");
    printf("encoded %llu page bytes into %llu frame bytes:",
           (unsigned long long)counters.bytes_in, (unsigned long long)counters.bytes_out);
    for (i = 0; i < MECOM_METHOD_SLOTS; i++) {
        if (counters.method_pages[i]) {
            printf(" %s=%llu", mecom_method_name(i),
                   (unsigned long long)counters.method_pages[i]);
        }
    }
    printf("\n");

    /* A corrupted frame: named status, last_error text, destination untouched. */
    st = mecom_encoder_encode(enc, src, offsets, NPAGES, frame, cap, &len);
    CHECK(st == MECOM_STATUS_OK, "encode");
    frame[24] ^= 0x40;      /* the checksum */
    memset(dst, 0xAA, (size_t)NPAGES * 2 * PAGE);
    st = mecom_decoder_decode(dec, frame, len, dst, offsets, NPAGES);
    CHECK(st != MECOM_STATUS_OK, "corrupt frame accepted");
    printf("corrupt frame: %s: %s\n", mecom_status_str(st), mecom_decoder_last_error(dec));
    for (i = 0; i < NPAGES * 2 * PAGE; i++) {
        if (dst[i] != 0xAA) {
            CHECK(0, "byte %u written by a failed decode", i);
            break;
        }
    }
    /* Truncations of every length fail cleanly. */
    frame[24] ^= 0x40;
    for (i = 0; i < len; i += 97) {
        st = mecom_decoder_decode(dec, frame, i, dst, offsets, NPAGES);
        CHECK(st != MECOM_STATUS_OK, "truncated frame of %u bytes accepted", i);
    }
    /* Garbage of every size up to a few KiB fails cleanly. */
    for (i = 0; i < 4096; i += 61) {
        unsigned k;
        for (k = 0; k < i; k++) {
            frame[k] = (uint8_t)next();
        }
        st = mecom_decoder_decode(dec, frame, i, dst, offsets, NPAGES);
        CHECK(st != MECOM_STATUS_OK, "garbage accepted");
    }

    parts_round_trip(&cfg, src, dst, offsets);

    /* NULLs and bad configurations are statuses, not crashes. */
    CHECK(mecom_encoder_encode(NULL, src, offsets, 1, frame, cap, &len) ==
          MECOM_STATUS_NULL_PARAMETER, "NULL encoder");
    CHECK(mecom_decoder_decode(dec, NULL, 0, dst, offsets, 1) ==
          MECOM_STATUS_NULL_PARAMETER, "NULL frame");
    cfg.page_size = 1000;
    {
        mecom_encoder *bad = NULL;
        st = mecom_encoder_new(&cfg, &bad);
        CHECK(st == MECOM_STATUS_UNSUPPORTED_PAGE_SIZE && bad == NULL,
              "page size 1000: %s", mecom_status_str(st));
    }
    CHECK(strcmp(mecom_status_str(9999), "unknown status") == 0, "unknown status");
    CHECK(mecom_max_frame_len(0, PAGE) == 0, "zero pages");

    mecom_encoder_free(enc);
    mecom_decoder_free(dec);
    mecom_encoder_free(NULL);
    mecom_decoder_free(NULL);
    free(src);
    free(dst);
    free(frame);
    if (failures) {
        printf("%d failed\n", failures);
        return 1;
    }
    printf("c smoke test: all checks passed\n");
    return 0;
}
