/* SPDX-License-Identifier: ISC */
/* placeholder */
#include "ring/ring.h"
#include <criterion/criterion.h>
Test(ring, placeholder)
{
    cr_assert_eq(ring_jump(0, 100), 0);
}
