/*
 * replay: a working set holding a real RAM image, changed the way real
 * guests change memory.
 *
 * usage: replay dev=<file or block device> wss=<MiB>
 *               rate=<MiB/s | Np (pages/s) | 0 = unlimited>
 *               mix=<replace:W,slice:W,words:W> seed=<n> stats=<seconds>
 *
 * Reads the image (raw 4 KiB pages; the harness attaches it as a read-only
 * virtio disk, /dev/vda) into a pristine copy (at most wss MiB of it) and
 * fills the working set with it, repeated when the working set is larger.
 * Prints MECOM-WORKLOAD-READY, then forever picks a random working-set page
 * and, with the mix's weights:
 *   replace: copies another (random) image page over it,
 *   slice:   copies a random 64..4096-byte slice of another image page, at
 *            the same offset (8-byte aligned),
 *   words:   adds 1..16 to 1..4 aligned 32- or 64-bit words of it (counters,
 *            pointers); an all-zero page is skipped for another pick (up to
 *            4 tries) so in-place updates land on live data.
 * Reports its real rate like memwrite: "replay: N pages/s (X MiB/s) ...".
 */
#include "mecom_gen.h"
#include "mecom_rate.h"
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

enum { OP_REPLACE, OP_SLICE, OP_WORDS, OP_N };
static const char *const OP_NAMES[OP_N] = { "replace", "slice", "words" };
static unsigned op_w[OP_N];
static unsigned op_total;

/* "replace:20,slice:40,words:40" (any order; missing = 0). 0 on success. */
static int op_parse(const char *spec)
{
    op_total = weights_parse(spec, OP_NAMES, op_w, OP_N);
    return op_total ? 0 : -1;
}

static int page_is_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)p;
    for (int i = 0; i < PAGE / 8; i++)
        if (w[i])
            return 0;
    return 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *dev = opt_get(argc, argv, "dev", "/dev/vda");
    long wss_mib = atol(opt_get(argc, argv, "wss", "128"));
    const char *rate_s = opt_get(argc, argv, "rate", "8");
    const char *mix = opt_get(argc, argv, "mix", "replace:20,slice:40,words:40");
    uint64_t seed = strtoull(opt_get(argc, argv, "seed", "1"), NULL, 0);
    double stats_every = atof(opt_get(argc, argv, "stats", "10"));

    if (wss_mib <= 0 || op_parse(mix)) {
        fprintf(stderr, "replay: bad wss=%ld or mix=%s\n", wss_mib, mix);
        return 2;
    }
    double pages_per_s = rate_pages_per_s(rate_s);
    rng_seed(seed);

    int fd = open(dev, O_RDONLY);
    if (fd < 0) {
        perror("replay: open image");
        return 1;
    }
    off_t dev_bytes = lseek(fd, 0, SEEK_END);
    lseek(fd, 0, SEEK_SET);
    size_t npages = (size_t)wss_mib * 1024 * 1024 / PAGE;
    size_t ipages = (size_t)dev_bytes / PAGE;
    if (ipages > npages)
        ipages = npages;
    if (ipages == 0) {
        fprintf(stderr, "replay: image %s holds no whole page (%lld bytes)\n", dev,
                (long long)dev_bytes);
        return 1;
    }
    uint8_t *img = mmap(NULL, ipages * PAGE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    uint8_t *mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (img == MAP_FAILED || mem == MAP_FAILED) {
        perror("replay: mmap");
        return 1;
    }
    double t0 = now_s();
    size_t got = 0, want = ipages * PAGE;
    while (got < want) {
        size_t chunk = want - got < (4u << 20) ? want - got : (4u << 20);
        ssize_t r = read(fd, img + got, chunk);
        if (r <= 0) {
            perror("replay: read image");
            return 1;
        }
        got += (size_t)r;
    }
    /* Drop the block device's page cache: only the workload's copies of
     * the image should sit in guest RAM. */
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ioctl(fd, BLKFLSBUF, 0);
    close(fd);
    size_t zero_pages = 0;
    for (size_t p = 0; p < npages; p++) {
        memcpy(mem + p * PAGE, img + (p % ipages) * PAGE, PAGE);
        if (p < ipages)
            zero_pages += page_is_zero(img + p * PAGE);
    }
    char extra[200];
    snprintf(extra, sizeof extra,
             "wss=%ldMiB image=%zupages zero=%.1f%% copies=%.2f rate=%.0fpages/s mix=%s "
             "init=%.1fs", wss_mib, ipages, 100.0 * zero_pages / ipages,
             (double)npages / ipages, pages_per_s, mix, now_s() - t0);
    ready_marker("replay", extra);

    double start = now_s(), last_stat = start;
    uint64_t done = 0, done_at_stat = 0, ops[OP_N] = { 0 };
    for (;;) {
        for (int b = 0; b < 32; b++) {
            size_t p = rndn((uint32_t)npages);
            uint8_t *pg = mem + p * PAGE;
            const uint8_t *src = img + (size_t)rndn((uint32_t)ipages) * PAGE;
            int op = weights_pick(op_w, OP_N, op_total);
            ops[op]++;
            if (op == OP_REPLACE) {
                memcpy(pg, src, PAGE);
            } else if (op == OP_SLICE) {
                uint32_t len = 64 + rndn(PAGE - 64 + 1);
                uint32_t off = rndn(PAGE - len + 1) & ~7u;
                memcpy(pg + off, src + off, len);
            } else {
                for (int t = 0; t < 4 && page_is_zero(pg); t++)
                    pg = mem + (size_t)rndn((uint32_t)npages) * PAGE;
                int n = 1 + (int)rndn(4);
                for (int i = 0; i < n; i++) {
                    if (rnd() & 1)
                        ((uint64_t *)pg)[rndn(PAGE / 8)] += 1 + rndn(16);
                    else
                        ((uint32_t *)pg)[rndn(PAGE / 4)] += 1 + rndn(16);
                }
            }
        }
        done += 32;
        double t = rate_wait(start, done, pages_per_s);
        if (stats_every > 0 && t - last_stat >= stats_every) {
            double r = (done - done_at_stat) / (t - last_stat);
            printf("replay: %.0f pages/s (%.1f MiB/s) replace=%llu slice=%llu words=%llu\n",
                   r, r * PAGE / 1048576.0, (unsigned long long)ops[0],
                   (unsigned long long)ops[1], (unsigned long long)ops[2]);
            last_stat = t;
            done_at_stat = done;
        }
    }
}
