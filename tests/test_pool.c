/* test_pool.c - placeholder replaced below */
#include <criterion/criterion.h>
#include "uzswap.h"
Test(pool, create_destroy) { struct uzs_pool *p; cr_assert_eq(uzs_pool_create(NULL, &p), 0); uzs_pool_destroy(p); }
