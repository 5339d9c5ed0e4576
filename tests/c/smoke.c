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
#include <stddef.h>
#include <string.h>
#include <sys/uio.h>
#include "mecom.h"

#define PAGE 4096u
#define NPAGES 128u
/* Bytes of the destination block: room for the spread-out offsets. */
#define DSTLEN ((size_t)NPAGES * 2 * PAGE)

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

/* mecom_iovec is laid out like struct iovec, so QEMU passes its own */
_Static_assert(sizeof(mecom_iovec) == sizeof(struct iovec), "iovec size");
_Static_assert(offsetof(mecom_iovec, iov_base) ==
               offsetof(struct iovec, iov_base), "iov_base offset");
_Static_assert(offsetof(mecom_iovec, iov_len) ==
               offsetof(struct iovec, iov_len), "iov_len offset");

/*
 * Read a frame in parts the way QEMU's receive glue does: the head into
 * rbuf, then the iovecs the library lays out (raw pages straight into
 * guest memory, other payloads into rbuf), filled from the wire in order
 * as readv() would, then finish.  With flip, one byte of the first raw
 * page read in place is flipped.  Returns finish_parts' status; *in_place
 * counts the pages read in place.
 */
static mecom_status read_in_parts(mecom_decoder *dec, const uint8_t *wire,
                                  size_t wlen, uint8_t *rbuf, size_t cap,
                                  uint8_t *dst, const uint64_t *offsets,
                                  const mecom_placement *where,
                                  int flip, unsigned *in_place)
{
    size_t head = mecom_frame_head_len(NPAGES), niov = 0, buffered = 0;
    size_t rpos = head, k;
    struct iovec iov[2 * NPAGES + 1];
    mecom_status st;

    CHECK(mecom_frame_max_iov(NPAGES) <= 2 * NPAGES + 1, "max_iov");
    memcpy(rbuf, wire, head);
    st = mecom_decoder_begin_parts(dec, rbuf, cap, head, dst, DSTLEN, offsets,
                                   NPAGES, where, (mecom_iovec *)iov,
                                   mecom_frame_max_iov(NPAGES), &niov,
                                   &buffered);
    CHECK(st == MECOM_STATUS_OK, "begin_parts: %s", mecom_status_str(st));
    for (k = 0; k < niov; k++) {
        uint8_t *base = iov[k].iov_base;
        CHECK(rpos + iov[k].iov_len <= wlen, "iovecs run past the frame");
        memcpy(base, wire + rpos, iov[k].iov_len);
        rpos += iov[k].iov_len;
        if (base >= dst && base < dst + (size_t)NPAGES * 2 * PAGE) {
            if (flip) {
                base[11] ^= 0x40;
                flip = 0;
            }
            (*in_place)++;
        }
    }
    CHECK(rpos == wlen, "parts: read %zu of %zu", rpos, wlen);
    return mecom_decoder_finish_parts(dec, rbuf, buffered, dst, DSTLEN, offsets,
                                      NPAGES);
}

/*
 * QEMU's receive path: contiguous frames from the encoder, bound to the
 * packet header (block name, offsets, zero-page list), read in parts.
 * Raw pages land in guest memory and are verified there: a flipped byte
 * in one is a checksum mismatch, and so is a zero-page list that changed
 * on the way.
 */
static void parts_round_trip(const mecom_config *cfg, const uint8_t *src,
                             uint8_t *dst, const uint64_t *offsets)
{
    size_t cap = mecom_max_frame_len(NPAGES, PAGE), len = 0;
    uint8_t *wire = malloc(cap), *rbuf = malloc(cap);
    mecom_encoder *enc = NULL;
    mecom_decoder *dec = NULL;
    unsigned i, in_place = 0, round;
    mecom_status st;
    static const char block[] = "pc.ram";
    const uint64_t zeros[2] = { 0, 2 * PAGE };
    mecom_placement where = {
        .block = (const uint8_t *)block,
        .block_len = sizeof(block) - 1,
        .zero_offsets = zeros,
        .n_zero = 2,
    };
    mecom_placement moved = where;

    moved.n_zero = 1;
    CHECK(mecom_encoder_new(cfg, &enc) == MECOM_STATUS_OK, "parts encoder");
    CHECK(mecom_decoder_new(cfg, &dec) == MECOM_STATUS_OK, "parts decoder");
    for (round = 0; round < 4; round++) {
        st = mecom_encoder_encode(enc, src, offsets, NPAGES, &where, wire,
                                  cap, &len);
        CHECK(st == MECOM_STATUS_OK, "encode: %s", mecom_status_str(st));
        memset(dst, 0xAA, (size_t)NPAGES * 2 * PAGE);
        st = read_in_parts(dec, wire, len, rbuf, cap, dst, offsets,
                           round == 3 ? &moved : &where, round == 2,
                           &in_place);
        if (round == 2) {
            CHECK(st == MECOM_STATUS_CHECKSUM_MISMATCH,
                  "a flipped raw page read in place: %s",
                  mecom_status_str(st));
            /* a failed frame does not advance the decoder: start over */
            mecom_decoder_free(dec);
            dec = NULL;
            CHECK(mecom_decoder_new(cfg, &dec) == MECOM_STATUS_OK, "decoder");
            mecom_encoder_free(enc);
            enc = NULL;
            CHECK(mecom_encoder_new(cfg, &enc) == MECOM_STATUS_OK, "encoder");
            continue;
        }
        if (round == 3) {
            CHECK(st == MECOM_STATUS_CHECKSUM_MISMATCH,
                  "a changed zero-page list: %s", mecom_status_str(st));
            break;
        }
        CHECK(st == MECOM_STATUS_OK, "finish_parts: %s: %s",
              mecom_status_str(st), mecom_decoder_last_error(dec));
        for (i = 0; i < NPAGES; i++) {
            CHECK(memcmp(src + offsets[i], dst + offsets[i], PAGE) == 0,
                  "parts round %u page %u differs", round, i);
        }
    }
    CHECK(in_place > 0, "no page went in place");
    /* finish without begin is a status */
    st = mecom_decoder_finish_parts(dec, rbuf, len, dst, DSTLEN, offsets,
                                    NPAGES);
    CHECK(st == MECOM_STATUS_INVALID_ARGUMENT, "finish without begin: %s",
          mecom_status_str(st));
    mecom_encoder_free(enc);
    mecom_decoder_free(dec);
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
        st = mecom_encoder_encode(enc, src, offsets, NPAGES, NULL, frame, cap, &len);
        CHECK(st == MECOM_STATUS_OK, "encode: %s: %s", mecom_status_str(st),
              mecom_encoder_last_error(enc));
        /*
         * Without max-bandwidth a sampled connection sends its pages raw
         * until it has measured the link (here it never does: the samples
         * are zeroed); with the link known the pages compress.
         */
        CHECK(len > 0 && (stats.bandwidth == 0 || len < (size_t)NPAGES * PAGE),
              "round %u frame length %zu", round, len);
        st = mecom_decoder_decode(dec, frame, len, dst, DSTLEN, offsets, NPAGES,
                                  NULL);
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
    st = mecom_encoder_encode(enc, src, offsets, NPAGES, NULL, frame, cap, &len);
    CHECK(st == MECOM_STATUS_OK, "encode");
    frame[24] ^= 0x40;      /* the checksum */
    memset(dst, 0xAA, (size_t)NPAGES * 2 * PAGE);
    st = mecom_decoder_decode(dec, frame, len, dst, DSTLEN, offsets, NPAGES,
                                  NULL);
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
        st = mecom_decoder_decode(dec, frame, i, dst, DSTLEN, offsets, NPAGES,
                                  NULL);
        CHECK(st != MECOM_STATUS_OK, "truncated frame of %u bytes accepted", i);
    }
    /* Garbage of every size up to a few KiB fails cleanly. */
    for (i = 0; i < 4096; i += 61) {
        unsigned k;
        for (k = 0; k < i; k++) {
            frame[k] = (uint8_t)next();
        }
        st = mecom_decoder_decode(dec, frame, i, dst, DSTLEN, offsets, NPAGES,
                                  NULL);
        CHECK(st != MECOM_STATUS_OK, "garbage accepted");
    }

    parts_round_trip(&cfg, src, dst, offsets);

    /* NULLs and bad configurations are statuses, not crashes. */
    CHECK(mecom_encoder_encode(NULL, src, offsets, 1, NULL, frame, cap, &len) ==
          MECOM_STATUS_NULL_PARAMETER, "NULL encoder");
    CHECK(mecom_decoder_decode(dec, NULL, 0, dst, DSTLEN, offsets, 1, NULL) ==
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
