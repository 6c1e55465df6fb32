/*
 * json.h - writing JSON text (.status, the admin socket's answers).
 */
#ifndef PAXOSFS_NET_JSON_H
#define PAXOSFS_NET_JSON_H

#include <stdio.h>

/* `s` as a JSON string: quotes, backslashes and control bytes escaped. */
void json_string(FILE *fp, const char *s);

#endif
