/*
 * mecom test-guest rate limiter, shared by the workloads that run at a set
 * rate (memwrite, replay: pages/s, compile: heap bytes/s).
 */
#ifndef MECOM_RATE_H
#define MECOM_RATE_H

#include "mecom_gen.h"

/* Sleep until `done` units of work are due at `rate` units/s counted from
 * `start` (a now_s() time); no sleep when rate <= 0 or when the loop is
 * behind.  Returns now_s() after any sleep. */
static double rate_wait(double start, double done, double rate)
{
    double t = now_s();
    if (rate > 0) {
        double due = start + done / rate;
        if (due > t) {
            double d = due - t;
            struct timespec ts = { (time_t)d, (long)((d - (time_t)d) * 1e9) };
            nanosleep(&ts, NULL);
            t = now_s();
        }
    }
    return t;
}

/* A page rate option: "<N>p" = N pages/s, else MiB/s ("0" = unlimited). */
static double rate_pages_per_s(const char *s)
{
    size_t n = strlen(s);
    if (n && (s[n - 1] == 'p' || s[n - 1] == 'P'))
        return atof(s);
    return atof(s) * (1024.0 * 1024.0 / PAGE);
}

#endif
