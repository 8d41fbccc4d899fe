/*
 * core_guard.h - complete core dumps (core_guard.c).
 */
#ifndef UZS_CORE_GUARD_H
#define UZS_CORE_GUARD_H

#include "engine.h"

/* Give the signals that dump core, where still at their default, a handler
 * that puts back the pages *engine holds first. */
void uzs_core_guard_install(struct uzs_engine *const *engine);

#endif
