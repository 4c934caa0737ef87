/* SPDX-License-Identifier: ISC */
/* burrowd: placeholder until the server lands. */
#include <stdio.h>

int
main(void)
{
    fputs("burrowd: not built yet\n", stderr);
    return 1;
}
