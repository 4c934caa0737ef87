/* SPDX-License-Identifier: ISC */
/* ring: placeholder until the implementation lands. */
#include "ring/ring.h"

const char *
ring_strerror(int err)
{
    (void)err;
    return "not implemented";
}
