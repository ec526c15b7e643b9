/*
 * Stream files: a sink that writes "path.tmp" (plain, or one lz4 frame via
 * liblz4's lz4frame API so that `lz4 -d` unpacks it) and commits it with
 * fsync + rename + directory fsync, so a crash leaves either the old file or
 * the new one, never a torn one; and a source that reads either kind,
 * telling them apart by the lz4 frame magic.
 */
#include "checkpoint/stream/internal.h"

#include <fcntl.h>
#include <libgen.h>
#include <lz4frame.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IO_CHUNK (64u << 10)
#define LZ4_MAGIC 0x184d2204u

struct pvm_ckpt_file {
	int fd;            /* -1 once closed */
	bool writing;
	bool lz4;
	int err;           /* first error, sticky */
	char *path;        /* owned */
	char *tmp_path;    /* owned; writing only */
	LZ4F_cctx *cctx;   /* owned; writing lz4 */
	LZ4F_dctx *dctx;   /* owned; reading lz4 */
	bool frame_done;   /* reading lz4: the frame's end mark was seen */
	uint8_t *io;       /* owned: compressed bytes (both ways) */
	size_t io_cap, io_len, io_pos;
	LZ4F_preferences_t prefs;
};

static void file_free(struct pvm_ckpt_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	LZ4F_freeCompressionContext(f->cctx);
	LZ4F_freeDecompressionContext(f->dctx);
	free(f->io);
	free(f->path);
	free(f->tmp_path);
	free(f);
}

static struct pvm_ckpt_file *file_alloc(const char *path)
{
	struct pvm_ckpt_file *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->fd = -1;
	f->path = strdup(path);
	if (!f->path) {
		free(f);
		return NULL;
	}
	return f;
}

int pvm_ckpt_file_create(const char *path, uint32_t flags,
			 struct pvm_ckpt_file **f_out)
{
	struct pvm_ckpt_file *f;
	size_t hdr;
	int rc;

	*f_out = NULL;
	if (!path || !*path || (flags & ~PVM_CKPT_FILE_LZ4))
		return -EINVAL;
	f = file_alloc(path);
	if (!f)
		return -ENOMEM;
	f->writing = true;
	f->lz4 = flags & PVM_CKPT_FILE_LZ4;
	if (asprintf(&f->tmp_path, "%s.tmp", path) < 0) {
		f->tmp_path = NULL;
		rc = -ENOMEM;
		goto out_free;
	}
	f->fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		     0600);
	if (f->fd < 0) {
		rc = -errno;
		pvm_err("checkpoint: create %s: %s", f->tmp_path,
			strerror(-rc));
		goto out_free;
	}
	if (f->lz4) {
		memset(&f->prefs, 0, sizeof(f->prefs));
		f->prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
		f->io_cap = LZ4F_compressBound(IO_CHUNK, &f->prefs);
		if (f->io_cap < LZ4F_HEADER_SIZE_MAX)
			f->io_cap = LZ4F_HEADER_SIZE_MAX;
		f->io = malloc(f->io_cap);
		if (!f->io ||
		    LZ4F_isError(LZ4F_createCompressionContext(&f->cctx,
							       LZ4F_VERSION))) {
			rc = -ENOMEM;
			goto out_unlink;
		}
		hdr = LZ4F_compressBegin(f->cctx, f->io, f->io_cap, &f->prefs);
		if (LZ4F_isError(hdr)) {
			rc = -EIO;
			goto out_unlink;
		}
		rc = pvm_write_all(f->fd, f->io, hdr);
		if (rc)
			goto out_unlink;
	}
	*f_out = f;
	return 0;

out_unlink:
	unlink(f->tmp_path);
out_free:
	file_free(f);
	return rc;
}

int pvm_ckpt_file_write(void *ctx, const void *buf, size_t len)
{
	struct pvm_ckpt_file *f = ctx;
	const uint8_t *p = buf;

	if (f->err)
		return f->err;
	if (!f->writing || f->fd < 0)
		return -EBADF;
	if (!f->lz4) {
		f->err = pvm_write_all(f->fd, buf, len);
		return f->err;
	}
	while (len && !f->err) {
		size_t k = len < IO_CHUNK ? len : IO_CHUNK;
		size_t n = LZ4F_compressUpdate(f->cctx, f->io, f->io_cap, p, k,
					       NULL);

		if (LZ4F_isError(n))
			f->err = -EIO;
		else
			f->err = pvm_write_all(f->fd, f->io, n);
		p += k;
		len -= k;
	}
	return f->err;
}

static int fsync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd, rc = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	free(copy);
	return rc;
}

int pvm_ckpt_file_commit(struct pvm_ckpt_file *f)
{
	int rc;

	if (!f || !f->writing)
		return -EINVAL;
	rc = f->err;
	if (!rc && f->lz4) {
		size_t n = LZ4F_compressEnd(f->cctx, f->io, f->io_cap, NULL);

		rc = LZ4F_isError(n) ? -EIO : pvm_write_all(f->fd, f->io, n);
	}
	if (!rc && fsync(f->fd) != 0)
		rc = -errno;
	if (!rc) {
		if (close(f->fd) != 0)
			rc = -errno;
		f->fd = -1;
	}
	if (!rc && rename(f->tmp_path, f->path) != 0)
		rc = -errno;
	if (!rc)
		rc = fsync_dir(f->path);
	if (rc) {
		pvm_err("checkpoint: commit %s: %s", f->path, strerror(-rc));
		unlink(f->tmp_path);
	}
	file_free(f);
	return rc;
}

void pvm_ckpt_file_abort(struct pvm_ckpt_file *f)
{
	if (!f)
		return;
	if (f->writing)
		unlink(f->tmp_path);
	file_free(f);
}

static int read_some(int fd, void *buf, size_t len, size_t *got_out)
{
	ssize_t n;

	*got_out = 0;
	do
		n = read(fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	*got_out = (size_t)n;
	return 0;
}

int pvm_ckpt_file_open(const char *path, struct pvm_ckpt_file **f_out)
{
	struct pvm_ckpt_file *f;
	size_t got = 0, n = 0;
	int rc;

	*f_out = NULL;
	if (!path)
		return -EINVAL;
	f = file_alloc(path);
	if (!f)
		return -ENOMEM;
	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0) {
		rc = -errno;
		pvm_err("checkpoint: open %s: %s", path, strerror(-rc));
		goto out_free;
	}
	f->io_cap = IO_CHUNK;
	f->io = malloc(f->io_cap);
	if (!f->io) {
		rc = -ENOMEM;
		goto out_free;
	}
	/* Peek at the first 4 bytes; they stay in f->io either way. */
	while (got < 4) {
		rc = read_some(f->fd, f->io + got, 4 - got, &n);
		if (rc)
			goto out_free;
		if (!n)
			break;
		got += n;
	}
	f->io_len = got;
	if (got == 4 && pvm_get_le32(f->io) == LZ4_MAGIC) {
		f->lz4 = true;
		if (LZ4F_isError(LZ4F_createDecompressionContext(&f->dctx,
								 LZ4F_VERSION))) {
			rc = -ENOMEM;
			goto out_free;
		}
	}
	*f_out = f;
	return 0;

out_free:
	file_free(f);
	return rc;
}

bool pvm_ckpt_file_is_lz4(const struct pvm_ckpt_file *f)
{
	return f->lz4;
}

/* At the end of the frame: one frame per file, anything after it is damage. */
static int check_after_frame(struct pvm_ckpt_file *f)
{
	size_t n = 0;
	int rc;

	if (f->io_pos == f->io_len) {
		rc = read_some(f->fd, f->io, 1, &n);
		if (rc)
			return rc;
		f->io_pos = 0;
		f->io_len = n;
	}
	if (f->io_pos < f->io_len) {
		pvm_err("checkpoint: %s: data after the lz4 frame", f->path);
		return -EBADMSG;
	}
	return 0;
}

static int read_lz4(struct pvm_ckpt_file *f, uint8_t *dst, size_t len,
		    size_t *got_out)
{
	size_t done = 0, n = 0;
	int rc;

	while (done < len && !f->frame_done) {
		size_t in, out, hint;

		if (f->io_pos == f->io_len) {
			rc = read_some(f->fd, f->io, f->io_cap, &n);
			if (rc)
				return rc;
			if (!n) {
				pvm_err("checkpoint: %s: lz4 frame truncated",
					f->path);
				return -EBADMSG;
			}
			f->io_len = n;
			f->io_pos = 0;
		}
		in = f->io_len - f->io_pos;
		out = len - done;
		hint = LZ4F_decompress(f->dctx, dst + done, &out,
				       f->io + f->io_pos, &in, NULL);
		if (LZ4F_isError(hint)) {
			pvm_err("checkpoint: %s: lz4: %s", f->path,
				LZ4F_getErrorName(hint));
			return -EBADMSG;
		}
		f->io_pos += in;
		done += out;
		if (hint == 0)
			f->frame_done = true;
	}
	/* A short read means end of stream: make sure it really is. */
	if (done < len) {
		rc = check_after_frame(f);
		if (rc)
			return rc;
	}
	*got_out = done;
	return 0;
}

int pvm_ckpt_file_read(void *ctx, void *buf, size_t len, size_t *got_out)
{
	struct pvm_ckpt_file *f = ctx;
	size_t n;
	int rc;

	*got_out = 0;
	if (f->writing || f->fd < 0)
		return -EBADF;
	if (f->err)
		return f->err;
	if (f->lz4)
		rc = read_lz4(f, buf, len, got_out);
	else if (f->io_pos < f->io_len) {
		n = f->io_len - f->io_pos;
		if (n > len)
			n = len;
		memcpy(buf, f->io + f->io_pos, n);
		f->io_pos += n;
		*got_out = n;
		rc = 0;
	} else
		rc = read_some(f->fd, buf, len, got_out);
	if (rc)
		f->err = rc;
	return rc;
}

void pvm_ckpt_file_close(struct pvm_ckpt_file *f)
{
	if (f && !f->writing)
		file_free(f);
}

int pvm_ckpt_verify_file(const char *path, uint64_t max_pfns,
			 struct pvm_ckpt_info *info_out)
{
	struct pvm_ckpt_info local;
	struct pvm_ckpt_info *info = info_out ? info_out : &local;
	struct pvm_ckpt_file *f;
	uint8_t extra;
	size_t got = 0;
	int rc;

	memset(info, 0, sizeof(*info));
	rc = pvm_ckpt_file_open(path, &f);
	if (rc) {
		info->error = rc;
		snprintf(info->error_msg, sizeof(info->error_msg),
			 "cannot open %s: %s", path, strerror(-rc));
		return rc;
	}
	rc = pvm_ckpt_verify(pvm_ckpt_file_read, f, max_pfns, info);
	if (!rc) {
		/* The stream ended: the file must end there too. */
		rc = pvm_ckpt_file_read(f, &extra, 1, &got);
		if (!rc && got)
			rc = -EBADMSG;
		if (rc) {
			info->error = rc;
			snprintf(info->error_msg, sizeof(info->error_msg),
				 "offset %llu: bytes after the final END record",
				 (unsigned long long)info->bytes);
			pvm_err("checkpoint: %s: %s", path, info->error_msg);
		}
	}
	pvm_ckpt_file_close(f);
	return rc;
}
