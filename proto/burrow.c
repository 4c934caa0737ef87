/* SPDX-License-Identifier: ISC */
/* proto/burrow: placeholder until the implementation lands. */
#include "proto/burrow.h"

const char *
proto_strerror(int err)
{
    (void)err;
    return "not implemented";
}
