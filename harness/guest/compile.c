/*
 * compile: a compiler-like heap workload.
 *
 * usage: compile wss=<MiB> rate=<MiB/s of new+mutated heap, 0 = unlimited>
 *                unit=<KiB per translation unit> seed=<n> stats=<seconds>
 *
 * Builds "translation units": a hash-table symbol table of malloc'd symbol
 * structs (identifier strings, pointers to types and scopes), expression
 * trees of AST nodes with pointers to each other and to symbols, string
 * literals, and an emitted pseudo-assembly text buffer that grows by realloc.
 * Units are kept in a FIFO until the heap holds ~wss MiB; then the workload
 * runs forever: free the oldest unit, build a new one, and mutate random
 * fields (refcounts, line numbers, pointer swaps) in older units.
 */
#include "mecom_gen.h"
#include "mecom_rate.h"
#include <stdarg.h>

typedef struct Type {
    struct Type *base;
    char *name;
    int kind, size, align, quals;
} Type;

typedef struct Sym {
    struct Sym *next;       /* hash chain */
    struct Sym *scope_next; /* declaration order */
    char *name;
    Type *type;
    uint64_t hash;
    int kind, line, refs, flags;
    long offset;
} Sym;

typedef struct Node {
    int op, line;
    struct Node *kid[3];
    Sym *sym;
    Type *type;
    long ival;
    char *str;
} Node;

typedef struct Unit {
    Sym **htab;
    size_t hsize;
    Sym *syms;
    size_t nsyms;
    Type **types;
    size_t ntypes;
    Node **nodes;
    size_t nnodes, nodecap;
    char *code;
    size_t codelen, codecap;
    size_t bytes;
} Unit;

static size_t heap_bytes;

static void *xmalloc(Unit *u, size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "compile: out of memory\n");
        exit(1);
    }
    u->bytes += n + 16;
    return p;
}

static char *xstrdup(Unit *u, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc(u, n);
    memcpy(p, s, n);
    return p;
}

static uint64_t fnv(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 0x100000001b3ull;
    return h;
}

static void make_ident(char *buf, size_t n)
{
    int parts = 1 + rndn(3);
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < parts && len + 16 < n; i++)
        len += snprintf(buf + len, n - len, "%s%s", i ? "_" : "",
                        IDENT_PARTS[rndn(NIDENT)]);
    if (rndn(3) == 0 && len + 8 < n)
        snprintf(buf + len, n - len, "%u", rndn(1000));
}

static void emit(Unit *u, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void emit(Unit *u, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line)
        n = sizeof line - 1;
    if (u->codelen + n + 1 > u->codecap) {
        size_t nc = u->codecap ? u->codecap * 2 : 4096;
        char *p = realloc(u->code, nc);
        if (!p)
            exit(1);
        u->bytes += nc - u->codecap;
        u->code = p;
        u->codecap = nc;
    }
    memcpy(u->code + u->codelen, line, n);
    u->codelen += n;
    u->code[u->codelen] = 0;
}

static Sym *lookup_or_add(Unit *u, const char *name, int line)
{
    uint64_t h = fnv(name);
    size_t b = h & (u->hsize - 1);
    for (Sym *s = u->htab[b]; s; s = s->next)
        if (s->hash == h && !strcmp(s->name, name)) {
            s->refs++;
            return s;
        }
    Sym *s = xmalloc(u, sizeof *s);
    s->name = xstrdup(u, name);
    s->hash = h;
    s->type = u->types[rndn((uint32_t)u->ntypes)];
    s->kind = rndn(6);
    s->line = line;
    s->refs = 1;
    s->flags = rndn(16);
    s->offset = -8 * (long)(1 + rndn(64));
    s->next = u->htab[b];
    u->htab[b] = s;
    s->scope_next = u->syms;
    u->syms = s;
    u->nsyms++;
    return s;
}

static Node *new_node(Unit *u, int depth, int line)
{
    Node *n = xmalloc(u, sizeof *n);
    memset(n, 0, sizeof *n);
    n->op = rndn(40);
    n->line = line;
    n->type = u->types[rndn((uint32_t)u->ntypes)];
    uint32_t r = rndn(10);
    if (depth > 4 || r < 3) {
        char id[48];
        make_ident(id, sizeof id);
        n->sym = lookup_or_add(u, id, line);
    } else if (r < 5) {
        n->ival = rndn(r == 3 ? 16 : 100000);
    } else if (r < 6) {
        size_t len = 8 + rndn(72);
        n->str = xmalloc(u, len + 1);
        gen_text((uint8_t *)n->str, len);
        n->str[len] = 0;
    } else {
        int kids = 1 + rndn(3);
        for (int k = 0; k < kids; k++)
            n->kid[k] = new_node(u, depth + 1, line + rndn(3));
    }
    if (u->nnodes == u->nodecap) {
        size_t nc = u->nodecap ? u->nodecap * 2 : 256;
        Node **p = realloc(u->nodes, nc * sizeof *p);
        if (!p)
            exit(1);
        u->bytes += (nc - u->nodecap) * sizeof *p;
        u->nodes = p;
        u->nodecap = nc;
    }
    u->nodes[u->nnodes++] = n;
    return n;
}

static const char *const REGS[] = { "rax", "rbx", "rcx", "rdx", "rsi", "rdi",
                                    "r8", "r9", "r10", "r11", "r12", "r13" };
static const char *const INSNS[] = { "movq", "addq", "subq", "leaq", "cmpq",
                                     "imulq", "xorl", "testq", "movl", "shlq" };

static void codegen(Unit *u, Node *n)
{
    for (int k = 0; k < 3; k++)
        if (n->kid[k])
            codegen(u, n->kid[k]);
    if (n->sym)
        emit(u, "\t%s\t%ld(%%rbp), %%%s\t# %s:%d\n", INSNS[n->op % 10],
             n->sym->offset, REGS[n->op % 12], n->sym->name, n->line);
    else if (n->str)
        emit(u, "\tleaq\t.LC%u(%%rip), %%%s\n", rndn(10000), REGS[n->op % 12]);
    else
        emit(u, "\t%s\t$%ld, %%%s\n", INSNS[n->op % 10], n->ival,
             REGS[(n->op + 1) % 12]);
}

static Unit *build_unit(size_t target)
{
    Unit tmp;
    memset(&tmp, 0, sizeof tmp);
    Unit *u = &tmp;
    u->hsize = 1024;
    u->htab = calloc(u->hsize, sizeof *u->htab);
    u->bytes += u->hsize * sizeof *u->htab;
    u->ntypes = 24;
    u->types = xmalloc(u, u->ntypes * sizeof *u->types);
    for (size_t i = 0; i < u->ntypes; i++) {
        Type *t = xmalloc(u, sizeof *t);
        char id[48];
        make_ident(id, sizeof id);
        char full[64];
        snprintf(full, sizeof full, "struct %s", id);
        t->name = xstrdup(u, full);
        t->base = i ? u->types[rndn((uint32_t)i)] : NULL;
        t->kind = rndn(8);
        t->size = 1 << rndn(7);
        t->align = t->size > 8 ? 8 : t->size;
        t->quals = rndn(4);
        u->types[i] = t;
    }
    int line = 1;
    while (u->bytes < target) {
        char fname[48];
        make_ident(fname, sizeof fname);
        emit(u, "\t.globl\t%s\n\t.type\t%s, @function\n%s:\n\tpushq\t%%rbp\n",
             fname, fname, fname);
        int stmts = 4 + rndn(20);
        for (int s = 0; s < stmts; s++) {
            Node *n = new_node(u, 0, line);
            line += 1 + rndn(4);
            codegen(u, n);
        }
        emit(u, "\tpopq\t%%rbp\n\tret\n\t.size\t%s, .-%s\n", fname, fname);
    }
    Unit *out = malloc(sizeof *out);
    *out = *u;
    out->bytes += sizeof *out;
    return out;
}

static void free_node_shallow(Node *n)
{
    free(n->str);
    free(n);
}

static void free_unit(Unit *u)
{
    for (size_t i = 0; i < u->nnodes; i++)
        free_node_shallow(u->nodes[i]);
    free(u->nodes);
    for (Sym *s = u->syms, *nx; s; s = nx) {
        nx = s->scope_next;
        free(s->name);
        free(s);
    }
    for (size_t i = 0; i < u->ntypes; i++) {
        free(u->types[i]->name);
        free(u->types[i]);
    }
    free(u->types);
    free(u->htab);
    free(u->code);
    free(u);
}

/* "Optimisation passes": touch random nodes/symbols of an existing unit. */
static size_t mutate(Unit *u, int count)
{
    size_t touched = 0;
    for (int i = 0; i < count && u->nnodes; i++) {
        Node *n = u->nodes[rndn((uint32_t)u->nnodes)];
        n->line += 1;
        n->op = rndn(40);
        if (n->sym) {
            n->sym->refs++;
            n->sym->flags ^= 1 << rndn(8);
        }
        if (n->kid[0] && n->kid[1] && rndn(2)) {
            Node *t = n->kid[0];
            n->kid[0] = n->kid[1];
            n->kid[1] = t;
        }
        touched += sizeof *n;
    }
    /* patch some emitted code text in place, like a peephole pass */
    if (u->codelen > 64) {
        size_t off = rndn((uint32_t)(u->codelen - 64));
        gen_text((uint8_t *)u->code + off, 48);
        touched += 48;
    }
    return touched;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    long wss_mib = atol(opt_get(argc, argv, "wss", "128"));
    double rate = atof(opt_get(argc, argv, "rate", "8")) * 1048576.0;
    size_t unit_sz = (size_t)atol(opt_get(argc, argv, "unit", "512")) * 1024;
    uint64_t seed = strtoull(opt_get(argc, argv, "seed", "1"), NULL, 0);
    double stats_every = atof(opt_get(argc, argv, "stats", "10"));
    if (wss_mib <= 0 || unit_sz < 16384) {
        fprintf(stderr, "compile: bad wss/unit\n");
        return 2;
    }
    rng_seed(seed);
    size_t target = (size_t)wss_mib * 1048576;
    size_t cap = target / unit_sz + 16;
    Unit **ring = calloc(cap, sizeof *ring);
    size_t head = 0, count = 0;

    double t0 = now_s();
    while (heap_bytes < target && count < cap) {
        Unit *u = build_unit(unit_sz);
        heap_bytes += u->bytes;
        ring[(head + count++) % cap] = u;
    }
    char extra[128];
    snprintf(extra, sizeof extra, "wss=%ldMiB units=%zu heap=%zuMiB init=%.1fs",
             wss_mib, count, heap_bytes >> 20, now_s() - t0);
    ready_marker("compile", extra);

    double start = now_s(), last_stat = start;
    double work = 0, work_at_stat = 0;
    unsigned long built = 0;
    for (;;) {
        /* retire the oldest unit, compile a new one */
        Unit *old = ring[head];
        heap_bytes -= old->bytes;
        free_unit(old);
        head = (head + 1) % cap;
        count--;
        Unit *u = build_unit(unit_sz);
        heap_bytes += u->bytes;
        ring[(head + count++) % cap] = u;
        work += u->bytes;
        built++;
        for (int m = 0; m < 8; m++)
            work += mutate(ring[(head + rndn((uint32_t)count)) % cap], 256);

        double t = rate_wait(start, work, rate);
        if (stats_every > 0 && t - last_stat >= stats_every) {
            printf("compile: %.1f MiB/s heap churn, %lu units built, heap %zu MiB\n",
                   (work - work_at_stat) / (t - last_stat) / 1048576.0, built,
                   heap_bytes >> 20);
            last_stat = t;
            work_at_stat = work;
        }
    }
}
