/*
 * mecom test-guest rate limiter, shared by the workloads that run at a set
 * rate (memwrite: pages/s, compile: heap bytes/s).
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

#endif
