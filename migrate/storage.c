/*
 * The destination's storage policy (storage-roots in pvmigd.conf): an
 * incoming guest's disks are the source's claims about paths on *this*
 * host, so each must resolve inside a directory this host's operator
 * named. docs/security.md says why there is no default root.
 *
 *   mig_storage_roots_resolve()  at start: each root made canonical
 *   mig_storage_check()          at HELLO, before anything is created
 */
#include "migrate/internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int mig_storage_roots_resolve(struct pvm_service *s)
{
	struct pvm_service_config *c = &s->cfg;

	for (unsigned i = 0; i < c->nr_storage_roots; i++) {
		char *real = realpath(c->storage_roots[i], NULL);
		struct stat st;

		if (!real || stat(real, &st) < 0 || !S_ISDIR(st.st_mode) ||
		    strlen(real) >= sizeof(c->storage_roots[i])) {
			pvm_err("storage-roots: %s is not a directory%s%s",
				c->storage_roots[i], real ? "" : ": ",
				real ? "" : strerror(errno));
			free(real);
			return -EINVAL;
		}
		snprintf(c->storage_roots[i], sizeof(c->storage_roots[i]), "%s",
			 real);
		free(real);
	}
	return 0;
}

/* Is @path (canonical) @root itself or below it? */
static bool inside(const char *path, const char *root)
{
	size_t n = strlen(root);

	if (n == 1 && root[0] == '/')
		return true;
	return !strncmp(path, root, n) && path[n] == '/';
}

int mig_storage_check(struct pvm_service *s, struct dom_config *dc,
		      char *why, size_t why_len)
{
	const struct pvm_service_config *c = &s->cfg;

	for (uint32_t i = 0; i < dc->nr_disks; i++) {
		const char *path = dc->disks[i].path;
		struct stat st;
		char *real;
		bool ok = false;

		if (!c->nr_storage_roots) {
			snprintf(why, why_len,
				 "disk %u (%s): this host takes no incoming disks (storage-roots is not set in its pvmigd.conf)",
				 i, path);
			return -EACCES;
		}
		real = realpath(path, NULL);
		if (!real) {
			int e = errno;

			snprintf(why, why_len,
				 "disk %u (%s): %s on the destination (storage-roots)",
				 i, path, strerror(e));
			return -ENOENT;
		}
		for (unsigned r = 0; r < c->nr_storage_roots && !ok; r++)
			ok = inside(real, c->storage_roots[r]);
		if (!ok) {
			snprintf(why, why_len,
				 "disk %u (%s%s%s) is outside storage-roots of the destination",
				 i, path, strcmp(real, path) ? " -> " : "",
				 strcmp(real, path) ? real : "");
			free(real);
			return -EACCES;
		}
		if (stat(real, &st) < 0 ||
		    (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) ||
		    strlen(real) >= sizeof(dc->disks[i].path)) {
			snprintf(why, why_len,
				 "disk %u (%s) is not a file or block device under storage-roots",
				 i, path);
			free(real);
			return -EACCES;
		}
		/* The backend opens what was checked, with O_NOFOLLOW: a link
		 * put in place of the last component after this check fails
		 * to open instead of leading elsewhere. */
		snprintf(dc->disks[i].path, sizeof(dc->disks[i].path), "%s", real);
		free(real);
	}
	return 0;
}
