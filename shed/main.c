/* SPDX-License-Identifier: ISC */
/* shed: placeholder until the daemon lands. */
#include <stdio.h>

int
main(void)
{
    fputs("shed: not built yet\n", stderr);
    return 1;
}
