/*
 * guard.h - what the interposed wrappers (*_guard.c) share.
 *
 * A wrapper does its work only once the engine runs (uzs_guards_on, set by
 * shim.c); until then it is the plain system call.  That is all a program
 * without an engine needs, and it matters under the sanitizers: their
 * runtime calls getrlimit, close and the like while it starts, before its
 * shadow memory exists, and any instrumented access there would crash.
 * So the wrappers themselves are not instrumented (GUARD_ENTRY), and touch
 * nothing else before the flag says the engine, and so the runtime, is up.
 */
#ifndef UZS_GUARD_H
#define UZS_GUARD_H

extern int uzs_guards_on;

#define GUARD_ENTRY __attribute__((no_sanitize_address))
#define GUARDS_ON() (__atomic_load_n(&uzs_guards_on, __ATOMIC_ACQUIRE) != 0)

#endif
