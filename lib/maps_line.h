/*
 * maps_line.h - one line of /proc/self/maps, parsed (maps_line.c).
 */
#ifndef UZS_MAPS_LINE_H
#define UZS_MAPS_LINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct maps_line {
	uintptr_t start, end;
	char perms[5];
	bool anonymous;         /* no file, no device */
	const char *name;       /* "" when unnamed */
	size_t name_len;
};

/* Parse one line [p, end) of /proc/self/maps, without its newline; false
 * if malformed. */
bool uzs_maps_line_parse(const char *p, const char *end, struct maps_line *l);

#endif
