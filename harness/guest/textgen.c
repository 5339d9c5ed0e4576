/*
 * textgen: write <size> MiB of log/CSV-like text lines to a file (or stdout),
 * the input for the `sort` workload (busybox sort in a loop).
 *
 * usage: textgen size=<MiB> out=<path|-> seed=<n>
 *
 * Lines look like:
 *   2024-03-07T12:44:01 server-17 INFO request /usr/lib/page_alloc 404 8812 the memory ...
 * so sort has real keys to compare and the page cache holds realistic text.
 */
#include "mecom_gen.h"

int main(int argc, char **argv)
{
    long size_mib = atol(opt_get(argc, argv, "size", "64"));
    const char *out = opt_get(argc, argv, "out", "-");
    uint64_t seed = strtoull(opt_get(argc, argv, "seed", "1"), NULL, 0);
    if (size_mib <= 0) {
        fprintf(stderr, "textgen: bad size\n");
        return 2;
    }
    rng_seed(seed);
    FILE *f = strcmp(out, "-") ? fopen(out, "w") : stdout;
    if (!f) {
        perror(out);
        return 1;
    }
    static const char *const LEVEL[] = { "DEBUG", "INFO", "INFO", "INFO",
                                         "WARN", "ERROR" };
    size_t target = (size_t)size_mib * 1048576, written = 0;
    char line[512];
    while (written < target) {
        int n = snprintf(line, sizeof line,
                         "2024-%02u-%02uT%02u:%02u:%02u %s-%u %s %s_%s %u %u ",
                         1 + rndn(12), 1 + rndn(28), rndn(24), rndn(60),
                         rndn(60), IDENT_PARTS[rndn(NIDENT)], rndn(64),
                         LEVEL[rndn(6)], IDENT_PARTS[rndn(NIDENT)],
                         IDENT_PARTS[rndn(NIDENT)], 100 + rndn(400),
                         rndn(100000));
        size_t tl = 20 + rndn(120);
        gen_text((uint8_t *)line + n, tl);
        for (size_t i = n; i < n + tl; i++)
            if (line[i] == '\n')
                line[i] = ' ';
        line[n + tl] = '\n';
        size_t len = n + tl + 1;
        if (fwrite(line, 1, len, f) != len) {
            perror("textgen: write");
            return 1;
        }
        written += len;
    }
    if (f != stdout)
        fclose(f);
    return 0;
}
