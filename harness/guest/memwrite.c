/*
 * memwrite: dirty guest pages at a controlled rate over a working set whose
 * content looks like real memory.
 *
 * usage: memwrite wss=<MiB> rate=<MiB/s | Np (pages/s) | 0 = unlimited>
 *                 data=<mixed|random|text|ints|ptrs|sparse|zero|k:w,...>
 *                 dirty=<partial|full|word> seed=<n> stats=<seconds>
 *
 * Fills the whole working set first (every page gets a "kind" drawn from the
 * data mix and content of that kind), prints MECOM-WORKLOAD-READY, then
 * forever: pick a random page, rewrite part of it (partial, default: a random
 * 64..4096-byte slice), all of it (full) or one aligned 8-byte word of it
 * (word: an in-place update such as a counter or a pointer, the change a
 * delta against the destination's copy sends in a few bytes) with fresh
 * content of its kind.
 */
#include "mecom_gen.h"
#include "mecom_rate.h"
#include <sys/mman.h>

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    long wss_mib = atol(opt_get(argc, argv, "wss", "128"));
    const char *rate_s = opt_get(argc, argv, "rate", "32");
    const char *data = opt_get(argc, argv, "data", "mixed");
    const char *dirty = opt_get(argc, argv, "dirty", "partial");
    uint64_t seed = strtoull(opt_get(argc, argv, "seed", "1"), NULL, 0);
    double stats_every = atof(opt_get(argc, argv, "stats", "10"));

    if (wss_mib <= 0 || mix_parse(data)) {
        fprintf(stderr, "memwrite: bad wss=%ld or data=%s\n", wss_mib, data);
        return 2;
    }
    double pages_per_s = rate_pages_per_s(rate_s);
    int full = !strcmp(dirty, "full");
    int word = !strcmp(dirty, "word");
    if (!full && !word && strcmp(dirty, "partial")) {
        fprintf(stderr, "memwrite: bad dirty=%s\n", dirty);
        return 2;
    }
    rng_seed(seed);

    size_t npages = (size_t)wss_mib * 1024 * 1024 / PAGE;
    uint8_t *mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    uint8_t *kind = malloc(npages);
    if (mem == MAP_FAILED || !kind) {
        perror("memwrite: mmap");
        return 1;
    }
    double t0 = now_s();
    for (size_t p = 0; p < npages; p++) {
        kind[p] = (uint8_t)mix_pick();
        gen_kind(kind[p], mem + p * PAGE, PAGE);
    }
    char extra[160];
    snprintf(extra, sizeof extra,
             "wss=%ldMiB rate=%.0fpages/s data=%s dirty=%s init=%.1fs",
             wss_mib, pages_per_s, data, dirty, now_s() - t0);
    ready_marker("memwrite", extra);

    double start = now_s(), last_stat = start;
    uint64_t done = 0, done_at_stat = 0;
    for (;;) {
        for (int b = 0; b < 32; b++) {
            size_t p = rndn((uint32_t)npages);
            uint8_t *pg = mem + p * PAGE;
            if (full) {
                gen_kind(kind[p], pg, PAGE);
            } else if (word) {
                gen_kind(kind[p], pg + (rndn(PAGE / 8) * 8), 8);
            } else {
                uint32_t len = 64 + rndn(PAGE - 64 + 1);
                uint32_t off = rndn(PAGE - len + 1) & ~7u;
                gen_kind(kind[p], pg + off, len);
            }
        }
        done += 32;
        double t = rate_wait(start, done, pages_per_s);
        if (stats_every > 0 && t - last_stat >= stats_every) {
            double r = (done - done_at_stat) / (t - last_stat);
            printf("memwrite: %.0f pages/s (%.1f MiB/s)\n", r, r * PAGE / 1048576.0);
            last_stat = t;
            done_at_stat = done;
        }
    }
}
