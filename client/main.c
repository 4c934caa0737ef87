/* SPDX-License-Identifier: ISC */
/* shedc: placeholder until the client lands. */
#include <stdio.h>

int
main(void)
{
    fputs("shedc: not built yet\n", stderr);
    return 1;
}
