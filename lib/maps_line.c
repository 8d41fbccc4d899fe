/*
 * maps_line.c - one line of /proc/self/maps, parsed without allocating
 * (the engine's threads, and a wrapper called from any thread, read it).
 */
#include "config.h"

#include <string.h>

#include "maps_line.h"

static uintptr_t parse_hex(const char **p)
{
	uintptr_t v = 0;

	for (;; (*p)++) {
		char c = **p;

		if (c >= '0' && c <= '9')
			v = v * 16 + (uintptr_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v * 16 + (uintptr_t)(c - 'a' + 10);
		else
			return v;
	}
}

static const char *skip_field(const char *p, const char *end)
{
	while (p < end && *p != ' ')
		p++;
	while (p < end && *p == ' ')
		p++;
	return p;
}

/* Parse one line [p, end) of /proc/self/maps; false if malformed. */
bool uzs_maps_line_parse(const char *p, const char *end, struct maps_line *l)
{
	const char *dev, *inode;

	l->start = parse_hex(&p);
	if (*p++ != '-')
		return false;
	l->end = parse_hex(&p);
	if (*p++ != ' ' || end - p < 5)
		return false;
	memcpy(l->perms, p, 4);
	l->perms[4] = 0;
	p = skip_field(p, end);         /* perms */
	p = skip_field(p, end);         /* offset */
	dev = p;
	p = skip_field(p, end);         /* dev */
	inode = p;
	p = skip_field(p, end);         /* inode */
	l->anonymous = strncmp(dev, "00:00 ", 6) == 0 && inode[0] == '0' &&
		       inode[1] == ' ';
	l->name = p;
	l->name_len = (size_t)(end - p);
	return l->start < l->end;
}

