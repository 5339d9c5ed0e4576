/*
 * mecom test-guest helpers: a fast PRNG and generators for page contents
 * that look like real guest memory (small integers, pointers, text,
 * sparse/mostly-zero structures, random bytes).
 *
 * Header-only so each workload is a single `gcc -static -O2 x.c`.
 */
#ifndef MECOM_GEN_H
#define MECOM_GEN_H

#pragma GCC diagnostic ignored "-Wunused-function"

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096

/* ---- PRNG (xorshift64*) -------------------------------------------- */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static inline uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static inline uint32_t rndn(uint32_t n) /* [0, n) */
{
    return (uint32_t)(((rnd() >> 32) * (uint64_t)n) >> 32);
}

static void rng_seed(uint64_t s)
{
    rng_state = s ? s : 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 8; i++)
        rnd();
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- text vocabulary ---------------------------------------------- */
static const char *const WORDS[] = {
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with",
    "was", "on", "be", "by", "this", "are", "from", "at", "or", "an", "not",
    "memory", "page", "migration", "kernel", "process", "buffer", "request",
    "server", "client", "value", "table", "index", "error", "warning", "info",
    "debug", "connection", "timeout", "session", "user", "thread", "queue",
    "struct", "static", "const", "return", "void", "unsigned", "int", "char",
    "size_t", "uint64_t", "NULL", "malloc", "free", "printf", "include",
    "http", "GET", "POST", "HTTP/1.1", "200", "404", "500", "Content-Type",
    "application/json", "text/html", "utf-8", "localhost", "/usr/lib",
    "/var/log", "/home/user", "config", "default", "enabled", "disabled",
};
#define NWORDS (sizeof(WORDS) / sizeof(WORDS[0]))

static const char *const IDENT_PARTS[] = {
    "ngx", "http", "parse", "request", "line", "vfs", "read", "write", "inode",
    "dentry", "mm", "page", "alloc", "free", "list", "add", "del", "rb", "tree",
    "insert", "lookup", "hash", "table", "sched", "task", "cpu", "irq", "lock",
    "unlock", "init", "exit", "get", "put", "ref", "buf", "len", "ctx", "tmp",
    "node", "next", "prev", "state", "flags", "mode", "dev", "sock", "skb",
};
#define NIDENT (sizeof(IDENT_PARTS) / sizeof(IDENT_PARTS[0]))

/* Append text (words, numbers, punctuation, newlines) to dst, n bytes. */
static void gen_text(uint8_t *dst, size_t n)
{
    size_t i = 0;
    while (i < n) {
        char tmp[64];
        int len;
        uint32_t r = rndn(100);
        if (r < 70) {
            len = snprintf(tmp, sizeof tmp, "%s", WORDS[rndn(NWORDS)]);
        } else if (r < 82) {
            len = snprintf(tmp, sizeof tmp, "%u", rndn(r < 76 ? 100 : 100000));
        } else if (r < 90) {
            len = snprintf(tmp, sizeof tmp, "%s_%s", IDENT_PARTS[rndn(NIDENT)],
                           IDENT_PARTS[rndn(NIDENT)]);
        } else if (r < 95) {
            len = snprintf(tmp, sizeof tmp, "2024-%02u-%02uT%02u:%02u:%02u",
                           1 + rndn(12), 1 + rndn(28), rndn(24), rndn(60),
                           rndn(60));
        } else {
            static const char P[] = ".,;:()={}[]\"'";
            tmp[0] = P[rndn(sizeof(P) - 1)];
            len = 1;
        }
        for (int k = 0; k < len && i < n; k++)
            dst[i++] = (uint8_t)tmp[k];
        if (i < n)
            dst[i++] = rndn(12) == 0 ? '\n' : ' ';
    }
}

/* Arrays of small integers (counters, enums, lengths), mixed widths. */
static void gen_ints(uint8_t *dst, size_t n)
{
    size_t i = 0;
    uint32_t mode = rndn(3);
    uint32_t base = rndn(1000);
    while (i + 8 <= n) {
        if (mode == 0) { /* uint32 small values, often increasing */
            uint32_t v = base + rndn(64);
            if (rndn(4) == 0)
                base++;
            memcpy(dst + i, &v, 4);
            i += 4;
        } else if (mode == 1) { /* uint64 counters */
            uint64_t v = base + rndn(4096);
            memcpy(dst + i, &v, 8);
            i += 8;
        } else { /* uint16 / bytes mix */
            uint16_t v = (uint16_t)rndn(rndn(2) ? 16 : 1024);
            memcpy(dst + i, &v, 2);
            i += 2;
        }
    }
    while (i < n)
        dst[i++] = (uint8_t)rndn(8);
}

/* Pointer-heavy structs: {next, prev, data ptr, small fields, flags}. */
static uint64_t ptr_base(void)
{
    switch (rndn(3)) {
    case 0:  return 0x00007f0000000000ull + ((uint64_t)rndn(0x1000) << 28);
    case 1:  return 0xffff888000000000ull + ((uint64_t)rndn(0x4000) << 20);
    default: return 0x0000555555554000ull + ((uint64_t)rndn(0x100) << 16);
    }
}

static void gen_ptrs(uint8_t *dst, size_t n)
{
    uint64_t base = ptr_base();
    size_t i = 0;
    while (i + 64 <= n) {
        uint64_t s[8];
        s[0] = base + ((uint64_t)rndn(0x100000) << 3);      /* next */
        s[1] = base + ((uint64_t)rndn(0x100000) << 3);      /* prev */
        s[2] = rndn(5) ? base + ((uint64_t)rndn(1 << 20) << 4) : 0;
        s[3] = rndn(256);                                   /* refcount */
        s[4] = (uint64_t)rndn(16) << 32 | rndn(0x10000);    /* type/len */
        s[5] = rndn(3) ? 0 : rnd();                         /* hash */
        s[6] = 0;
        s[7] = rndn(2) ? 0xdead4ead00000000ull | rndn(8) : rndn(64);
        memcpy(dst + i, s, 64);
        i += 64;
    }
    while (i < n)
        dst[i++] = 0;
}

/* Mostly zero, a few non-zero words (sparse structs, bitmaps). */
static void gen_sparse(uint8_t *dst, size_t n)
{
    memset(dst, 0, n);
    uint32_t k = 1 + rndn(24);
    for (uint32_t j = 0; j < k && n >= 8; j++) {
        uint64_t v = rndn(2) ? rnd() : rndn(1000);
        memcpy(dst + (rndn((uint32_t)(n / 8)) * 8), &v, 8);
    }
}

static void gen_random(uint8_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = rnd();
        memcpy(dst + i, &v, 8);
    }
    for (; i < n; i++)
        dst[i] = (uint8_t)rnd();
}

/* ---- weighted choices ---------------------------------------------- */
/* Parse "name:W,name:W,..." (',' or '+' between items; names from
 * names[0..n), missing = 0) into w[0..n); returns the sum of the weights,
 * 0 on a syntax error, an unknown name or all-zero weights. */
static unsigned weights_parse(const char *spec, const char *const *names, unsigned *w, int n)
{
    char buf[256];
    memset(w, 0, n * sizeof *w);
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *tok = strtok(buf, ",+"); tok; tok = strtok(NULL, ",+")) {
        char *colon = strchr(tok, ':');
        if (!colon)
            return 0;
        *colon = 0;
        int k;
        for (k = 0; k < n; k++)
            if (!strcmp(tok, names[k]))
                break;
        if (k == n)
            return 0;
        w[k] = (unsigned)atoi(colon + 1);
    }
    unsigned total = 0;
    for (int k = 0; k < n; k++)
        total += w[k];
    return total;
}

/* A random index drawn with weights w[0..n) summing to total > 0. */
static int weights_pick(const unsigned *w, int n, unsigned total)
{
    uint32_t r = rndn(total);
    for (int k = 0; k < n; k++) {
        if (r < w[k])
            return k;
        r -= w[k];
    }
    return n - 1;
}

/* ---- data mix ------------------------------------------------------ */
enum { K_INT, K_PTR, K_TEXT, K_RAND, K_SPARSE, K_ZERO, K_DUP, K_NKIND };
static const char *const KIND_NAMES[K_NKIND] = {
    "int", "ptr", "text", "rand", "sparse", "zero", "dup"
};
static unsigned mix_w[K_NKIND];
static unsigned mix_total;

/*
 * spec: "mixed" | "random" | "text" | "ints" | "ptrs" | "sparse" | "zero"
 *       | "dup" or explicit weights "int:30,ptr:25,text:25,rand:10,dup:10"
 * returns 0 on success.
 */
static int mix_parse(const char *spec)
{
    memset(mix_w, 0, sizeof mix_w);
    if (!spec || !*spec || !strcmp(spec, "mixed")) {
        mix_w[K_INT] = 30; mix_w[K_PTR] = 25; mix_w[K_TEXT] = 25;
        mix_w[K_RAND] = 10; mix_w[K_SPARSE] = 8; mix_w[K_ZERO] = 2;
    } else if (!strcmp(spec, "random")) {
        mix_w[K_RAND] = 1;
    } else if (!strcmp(spec, "text")) {
        mix_w[K_TEXT] = 1;
    } else if (!strcmp(spec, "ints")) {
        mix_w[K_INT] = 1;
    } else if (!strcmp(spec, "ptrs")) {
        mix_w[K_PTR] = 1;
    } else if (!strcmp(spec, "sparse")) {
        mix_w[K_SPARSE] = 1;
    } else if (!strcmp(spec, "zero")) {
        mix_w[K_ZERO] = 1;
    } else if (!strcmp(spec, "dup")) {
        mix_w[K_DUP] = 1;
    } else {
        return (mix_total = weights_parse(spec, KIND_NAMES, mix_w, K_NKIND)) ? 0 : -1;
    }
    mix_total = 0;
    for (int k = 0; k < K_NKIND; k++)
        mix_total += mix_w[k];
    return mix_total ? 0 : -1;
}

static int mix_pick(void)
{
    return weights_pick(mix_w, K_NKIND, mix_total);
}

/*
 * "dup": a copy of one of DUP_POOL pages of text, the same in every run,
 * so that many pages of RAM are equal (what dedup finds)
 */
#define DUP_POOL 16
static void gen_dup(uint8_t *dst, size_t n)
{
    static uint8_t pool[DUP_POOL][4096];
    static int made;

    if (!made) {
        uint64_t saved = rng_state;

        rng_state = 0x5eedd00dull;
        for (int i = 0; i < DUP_POOL; i++)
            gen_text(pool[i], sizeof pool[i]);
        rng_state = saved;
        made = 1;
    }
    memcpy(dst, pool[rndn(DUP_POOL)], n < 4096 ? n : 4096);
}

static void gen_kind(int kind, uint8_t *dst, size_t n)
{
    switch (kind) {
    case K_INT:    gen_ints(dst, n); break;
    case K_PTR:    gen_ptrs(dst, n); break;
    case K_TEXT:   gen_text(dst, n); break;
    case K_RAND:   gen_random(dst, n); break;
    case K_SPARSE: gen_sparse(dst, n); break;
    case K_DUP:    gen_dup(dst, n); break;
    default:       memset(dst, 0, n); break;
    }
}

/* ---- tiny /proc/cmdline-style option parsing ------------------------ */
/* argv entries look like key=value; return value for key or def. */
static const char *opt_get(int argc, char **argv, const char *key,
                           const char *def)
{
    size_t kl = strlen(key);
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], key, kl) && argv[i][kl] == '=')
            return argv[i] + kl + 1;
    return def;
}

static void ready_marker(const char *workload, const char *extra)
{
    /* One line, flushed, so the host-side harness sees it promptly. */
    printf("MECOM-WORKLOAD-READY workload=%s %s\n", workload, extra ? extra : "");
    fflush(stdout);
}

#endif
