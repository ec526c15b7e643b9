/*
 * Encryption at rest: a sealed file is the bytes of a save file (optionally
 * an lz4 frame of them) cut into chunks, each sealed with AES-256-GCM
 * (docs/stream-format.md §9). The key comes from a key file and is wiped
 * from memory on every exit path.
 *
 *   pvm_ckpt__key_load()                      the key file: 32 bytes or 64 hex
 *   pvm_ckpt__sealed_create/write/commit/abort   writing (tmp, fsync, rename)
 *   pvm_ckpt__unseal_open/read/close          reading
 *
 * Each chunk's nonce is the file's random 96-bit base with the chunk index
 * XORed into its last 8 octets; its additional data is the 32-octet file
 * header, the index and a final-chunk flag. So chunks cannot be reordered,
 * dropped, repeated, moved between files, or the file cut at a chunk
 * boundary without a failed tag.
 */
#include "checkpoint/internal.h"

#include <fcntl.h>
#include <lz4frame.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEAL_MAGIC "PVMSEAL1"
#define SEAL_HDR 32u
#define SEAL_TAG 16u
#define SEAL_CHUNK (1u << 20)
#define SEAL_CHUNK_MIN 4096u
#define SEAL_CHUNK_MAX (16u << 20)
#define SEAL_F_LZ4 0x1u
#define LZ4_PIECE (64u * 1024u)

bool pvm_ckpt__is_sealed(const uint8_t *p, size_t len)
{
	return len >= 8 && !memcmp(p, SEAL_MAGIC, 8);
}

bool pvm_ckpt__is_sealed_file(const char *path)
{
	uint8_t m[8];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool sealed;

	if (fd < 0)
		return false;
	sealed = read(fd, m, sizeof(m)) == (ssize_t)sizeof(m) &&
		 pvm_ckpt__is_sealed(m, sizeof(m));
	close(fd);
	return sealed;
}

/* ---- the key --------------------------------------------------------------- */

static int hexval(int c)
{
	return c >= '0' && c <= '9' ? c - '0' :
	       c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int pvm_ckpt__key_load(const char *path, struct sr_key *key,
		       struct pvm_error *e)
{
	uint8_t buf[130];
	struct stat st;
	ssize_t n;
	size_t len;
	int fd, rc = 0;

	memset(key, 0, sizeof(*key));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pvm_error_set(e, -errno,
				     "cannot open the key file %s: %s", path,
				     strerror(errno));
	if (fstat(fd, &st) == 0 && (st.st_mode & 077))
		pvm_warn("key file %s can be read by others (mode %o): "
			 "chmod 600 it", path, (unsigned)(st.st_mode & 0777));
	n = read(fd, buf, sizeof(buf));
	close(fd);
	len = n > 0 ? (size_t)n : 0;
	/* A 32-byte file is a raw key, whatever its last byte is (1 random
	 * key in 85 ends in '\n', '\r' or ' '); only the hex form may carry a
	 * trailing newline or spaces. */
	while (len > 32 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
			    buf[len - 1] == ' '))
		len--;
	if (len == 32) {
		memcpy(key->k, buf, 32);
	} else if (len == 64) {
		for (size_t i = 0; i < 32 && !rc; i++) {
			int hi = hexval(buf[2 * i]), lo = hexval(buf[2 * i + 1]);

			if (hi < 0 || lo < 0)
				rc = -EINVAL;
			else
				key->k[i] = (uint8_t)(hi << 4 | lo);
		}
	} else {
		rc = -EINVAL;
	}
	pvm_wipe(buf, sizeof(buf));
	if (rc) {
		pvm_ckpt__key_wipe(key);
		return pvm_error_set(
		    e, rc,
		    "key file %s: want 32 bytes, or 64 hex "
		    "digits (e.g. head -c 32 /dev/urandom > KEY)",
		    path);
	}
	key->loaded = true;
	return 0;
}

void pvm_ckpt__key_wipe(struct sr_key *key)
{
	pvm_wipe(key, sizeof(*key));
}

static void chunk_nonce(const uint8_t base[12], uint64_t index, uint8_t out[12])
{
	memcpy(out, base, 12);
	for (int i = 0; i < 8; i++)
		out[4 + i] ^= (uint8_t)(index >> (56 - 8 * i));
}

static void chunk_aad(const uint8_t hdr[SEAL_HDR], uint64_t index, bool last,
		      uint8_t out[SEAL_HDR + 9])
{
	memcpy(out, hdr, SEAL_HDR);
	pvm_put_le64(out + SEAL_HDR, index);
	out[SEAL_HDR + 8] = last;
}

/* ---- writing ------------------------------------------------------------------ */

struct sr_sealed {
	int fd;
	char *path, *tmp;
	EVP_CIPHER_CTX *ctx;    /* holds the key schedule; freed (cleansed) */
	uint8_t key[32];        /* wiped in sealed_free */
	uint8_t hdr[SEAL_HDR];
	uint64_t index;
	uint8_t *plain;         /* one chunk of plaintext being filled */
	size_t fill;
	uint8_t *out;           /* a sealed chunk: SEAL_CHUNK + tag */
	LZ4F_cctx *cctx;        /* NULL: no compression */
	uint8_t *z;
	size_t zcap;
	int err;
};

static void sealed_free(struct sr_sealed *s)
{
	if (s->fd >= 0)
		close(s->fd);
	EVP_CIPHER_CTX_free(s->ctx);
	LZ4F_freeCompressionContext(s->cctx);
	pvm_wipe(s->key, sizeof(s->key));
	if (s->plain)
		pvm_wipe(s->plain, SEAL_CHUNK);
	free(s->plain);
	free(s->out);
	free(s->z);
	free(s->path);
	free(s->tmp);
	free(s);
}

static int seal_chunk(struct sr_sealed *s, bool last)
{
	uint8_t nonce[12], aad[SEAL_HDR + 9];
	int n = 0, m = 0;

	chunk_nonce(s->hdr + 16, s->index, nonce);
	chunk_aad(s->hdr, s->index, last, aad);
	if (EVP_EncryptInit_ex(s->ctx, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_EncryptUpdate(s->ctx, NULL, &n, aad, sizeof(aad)) != 1 ||
	    (s->fill && EVP_EncryptUpdate(s->ctx, s->out, &n, s->plain,
					  (int)s->fill) != 1) ||
	    EVP_EncryptFinal_ex(s->ctx, s->out + s->fill, &m) != 1 ||
	    EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG,
				s->out + s->fill) != 1)
		return -EIO;
	s->index++;
	s->err = pvm_write_all(s->fd, s->out, s->fill + SEAL_TAG);
	s->fill = 0;
	return s->err;
}

static int feed(struct sr_sealed *s, const uint8_t *p, size_t len)
{
	while (len && !s->err) {
		size_t k = SEAL_CHUNK - s->fill < len ? SEAL_CHUNK - s->fill : len;

		memcpy(s->plain + s->fill, p, k);
		s->fill += k;
		p += k;
		len -= k;
		if (s->fill == SEAL_CHUNK)
			seal_chunk(s, false);
	}
	return s->err;
}

int pvm_ckpt__sealed_create(const char *path, const struct sr_key *key,
			    bool lz4, struct sr_sealed **out)
{
	struct sr_sealed *s = calloc(1, sizeof(*s));
	LZ4F_preferences_t prefs;
	size_t n;
	int rc = -ENOMEM;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->fd = -1;
	memcpy(s->key, key->k, sizeof(s->key));
	s->path = strdup(path);
	if (asprintf(&s->tmp, "%s.tmp", path) < 0)
		s->tmp = NULL;
	s->plain = malloc(SEAL_CHUNK);
	s->out = malloc(SEAL_CHUNK + SEAL_TAG);
	s->ctx = EVP_CIPHER_CTX_new();
	if (!s->path || !s->tmp || !s->plain || !s->out || !s->ctx)
		goto out_free;
	memcpy(s->hdr, SEAL_MAGIC, 8);
	pvm_put_le32(s->hdr + 8, SEAL_CHUNK);
	pvm_put_le32(s->hdr + 12, lz4 ? SEAL_F_LZ4 : 0);
	if (RAND_bytes(s->hdr + 16, 12) != 1 ||
	    EVP_EncryptInit_ex(s->ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
	    EVP_EncryptInit_ex(s->ctx, NULL, NULL, s->key, NULL) != 1) {
		rc = -EIO;
		goto out_free;
	}
	if (lz4) {
		memset(&prefs, 0, sizeof(prefs));
		s->zcap = LZ4F_compressBound(LZ4_PIECE, &prefs);
		if (s->zcap < LZ4F_HEADER_SIZE_MAX)
			s->zcap = LZ4F_HEADER_SIZE_MAX;
		s->z = malloc(s->zcap);
		if (!s->z || LZ4F_isError(LZ4F_createCompressionContext(
				     &s->cctx, LZ4F_VERSION)))
			goto out_free;
	}
	s->fd = open(s->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (s->fd < 0) {
		rc = -errno;
		goto out_free;
	}
	rc = pvm_write_all(s->fd, s->hdr, SEAL_HDR);
	if (!rc && lz4) {
		n = LZ4F_compressBegin(s->cctx, s->z, s->zcap, &prefs);
		rc = LZ4F_isError(n) ? -EIO : feed(s, s->z, n);
	}
	if (rc)
		goto out_unlink;
	*out = s;
	return 0;

out_unlink:
	unlink(s->tmp);
out_free:
	sealed_free(s);
	return rc;
}

int pvm_ckpt__sealed_write(void *ctx, const void *buf, size_t len)
{
	struct sr_sealed *s = ctx;
	const uint8_t *p = buf;

	if (!s->cctx)
		return s->err ? s->err : feed(s, p, len);
	while (len && !s->err) {
		size_t k = len < LZ4_PIECE ? len : LZ4_PIECE;
		size_t n = LZ4F_compressUpdate(s->cctx, s->z, s->zcap, p, k,
					       NULL);

		if (LZ4F_isError(n))
			return s->err = -EIO;
		feed(s, s->z, n);
		p += k;
		len -= k;
	}
	return s->err;
}

int pvm_ckpt__sealed_commit(struct sr_sealed *s)
{
	char *dir;
	int rc = s->err, dfd;

	if (!rc && s->cctx) {
		size_t n = LZ4F_compressEnd(s->cctx, s->z, s->zcap, NULL);

		rc = LZ4F_isError(n) ? -EIO : feed(s, s->z, n);
	}
	if (!rc)
		rc = seal_chunk(s, true); /* fill < SEAL_CHUNK: the last */
	if (!rc && fsync(s->fd))
		rc = -errno;
	if (!rc && close(s->fd))
		rc = -errno;
	s->fd = -1;
	if (!rc && rename(s->tmp, s->path))
		rc = -errno;
	if (!rc && (dir = strdup(s->path))) {
		char *slash = strrchr(dir, '/');

		if (slash)
			*slash = '\0';
		dfd = open(slash ? (*dir ? dir : "/") : ".",
			   O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			if (fsync(dfd))
				rc = -errno;
			close(dfd);
		}
		free(dir);
	}
	if (rc)
		unlink(s->tmp);
	sealed_free(s);
	return rc;
}

void pvm_ckpt__sealed_abort(struct sr_sealed *s)
{
	if (!s)
		return;
	unlink(s->tmp);
	sealed_free(s);
}

/* ---- reading ------------------------------------------------------------------ */

struct sr_unseal {
	int fd;
	EVP_CIPHER_CTX *ctx;
	uint8_t hdr[SEAL_HDR];
	uint32_t chunk;
	uint64_t index;
	uint8_t *cbuf;          /* a sealed chunk as read */
	uint8_t *plain;         /* its plaintext */
	size_t plain_len, plain_off;
	bool last_seen;
	LZ4F_dctx *dctx;        /* NULL: not compressed */
	bool frame_done;
	char *path;
	char why[200];          /* the first failure, "" if none */
};

/* Records (and logs) the first failure of a read; returns -EBADMSG. */
static int ufail(struct sr_unseal *u, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int ufail(struct sr_unseal *u, const char *fmt, ...)
{
	va_list ap;

	if (!u->why[0]) {
		va_start(ap, fmt);
		vsnprintf(u->why, sizeof(u->why), fmt, ap);
		va_end(ap);
		pvm_err("%s: %s", u->path, u->why);
	}
	return -EBADMSG;
}

const char *pvm_ckpt__unseal_error(const struct sr_unseal *u)
{
	return u && u->why[0] ? u->why : NULL;
}

bool pvm_ckpt__unseal_is_lz4(const struct sr_unseal *u)
{
	return u->dctx != NULL;
}

void pvm_ckpt__unseal_close(struct sr_unseal *u)
{
	if (!u)
		return;
	if (u->fd >= 0)
		close(u->fd);
	EVP_CIPHER_CTX_free(u->ctx);
	LZ4F_freeDecompressionContext(u->dctx);
	if (u->plain)
		pvm_wipe(u->plain, u->chunk);
	free(u->plain);
	free(u->cbuf);
	free(u->path);
	free(u);
}

static int read_full(int fd, uint8_t *p, size_t len, size_t *got)
{
	*got = 0;
	while (*got < len) {
		ssize_t n = read(fd, p + *got, len - *got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		*got += (size_t)n;
	}
	return 0;
}

int pvm_ckpt__unseal_open(const char *path, const struct sr_key *key,
			  struct sr_unseal **out, struct pvm_error *e)
{
	struct sr_unseal *u = calloc(1, sizeof(*u));
	uint32_t flags;
	size_t got;
	int rc;

	*out = NULL;
	if (!u)
		return pvm_error_set(e, -ENOMEM, "out of memory");
	u->fd = open(path, O_RDONLY | O_CLOEXEC);
	u->path = strdup(path);
	if (u->fd < 0) {
		rc = pvm_error_set(e, -errno, "cannot open %s: %s", path,
				   strerror(errno));
		goto out_free;
	}
	rc = read_full(u->fd, u->hdr, SEAL_HDR, &got);
	if (rc || got < SEAL_HDR || !pvm_ckpt__is_sealed(u->hdr, got)) {
		rc = pvm_error_set(e, rc ? rc : -EBADMSG,
				   "%s: truncated or not an "
				   "encrypted pvmig file",
				   path);
		goto out_free;
	}
	u->chunk = pvm_get_le32(u->hdr + 8);
	flags = pvm_get_le32(u->hdr + 12);
	if (u->chunk < SEAL_CHUNK_MIN || u->chunk > SEAL_CHUNK_MAX ||
	    (flags & ~SEAL_F_LZ4) || pvm_get_le32(u->hdr + 28)) {
		rc = pvm_error_set(e, -EBADMSG,
				   "%s: encryption header is damaged "
				   "(chunk size %u, flags %#x)",
				   path, u->chunk, flags);
		goto out_free;
	}
	if (!key || !key->loaded) {
		rc = pvm_error_set(e, -ENOKEY,
				   "%s is encrypted: give its key "
				   "(--key-file)",
				   path);
		goto out_free;
	}
	u->cbuf = malloc((size_t)u->chunk + SEAL_TAG);
	u->plain = malloc(u->chunk);
	u->ctx = EVP_CIPHER_CTX_new();
	if (!u->cbuf || !u->plain || !u->ctx ||
	    EVP_DecryptInit_ex(u->ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(u->ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
	    EVP_DecryptInit_ex(u->ctx, NULL, NULL, key->k, NULL) != 1) {
		rc = pvm_error_set(e, -ENOMEM, "cannot set up AES-256-GCM");
		goto out_free;
	}
	if ((flags & SEAL_F_LZ4) &&
	    LZ4F_isError(LZ4F_createDecompressionContext(&u->dctx,
							  LZ4F_VERSION))) {
		rc = pvm_error_set(e, -ENOMEM, "out of memory");
		goto out_free;
	}
	*out = u;
	return 0;

out_free:
	pvm_ckpt__unseal_close(u);
	return rc;
}

/* Decrypts the next chunk into u->plain. */
static int next_chunk(struct sr_unseal *u)
{
	uint8_t nonce[12], aad[SEAL_HDR + 9], extra;
	size_t got;
	bool last;
	int n = 0, rc;

	rc = read_full(u->fd, u->cbuf, (size_t)u->chunk + SEAL_TAG, &got);
	if (rc)
		return rc;
	if (got < SEAL_TAG)
		return ufail(u, "truncated: the encrypted stream ends without "
			     "its final chunk (chunk %llu)",
			     (unsigned long long)u->index);
	last = got < (size_t)u->chunk + SEAL_TAG;
	chunk_nonce(u->hdr + 16, u->index, nonce);
	chunk_aad(u->hdr, u->index, last, aad);
	got -= SEAL_TAG;
	if (EVP_DecryptInit_ex(u->ctx, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_DecryptUpdate(u->ctx, NULL, &n, aad, sizeof(aad)) != 1 ||
	    (got && EVP_DecryptUpdate(u->ctx, u->plain, &n, u->cbuf,
				      (int)got) != 1) ||
	    EVP_CIPHER_CTX_ctrl(u->ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG,
				u->cbuf + got) != 1 ||
	    EVP_DecryptFinal_ex(u->ctx, u->plain + got, &n) != 1) {
		return ufail(u, "chunk %llu fails authentication: a wrong "
			     "key, or the file is damaged or cut",
			     (unsigned long long)u->index);
	}
	u->index++;
	u->plain_len = got;
	u->plain_off = 0;
	if (last) {
		u->last_seen = true;
		if (read_full(u->fd, &extra, 1, &got) == 0 && got)
			return ufail(u, "bytes after the final chunk");
	}
	return 0;
}

/* Plaintext (before lz4) into @buf: up to @len, 0 only at the end. */
static int plain_read(struct sr_unseal *u, uint8_t *buf, size_t len,
		      size_t *got_out)
{
	*got_out = 0;
	while (u->plain_off == u->plain_len) {
		int rc;

		if (u->last_seen)
			return 0;
		rc = next_chunk(u);
		if (rc)
			return rc;
	}
	*got_out = u->plain_len - u->plain_off < len ? u->plain_len - u->plain_off
						     : len;
	memcpy(buf, u->plain + u->plain_off, *got_out);
	u->plain_off += *got_out;
	return 0;
}

int pvm_ckpt__unseal_read(void *ctx, void *buf, size_t len, size_t *got_out)
{
	struct sr_unseal *u = ctx;
	uint8_t *dst = buf;
	size_t done = 0;

	if (!u->dctx)
		return plain_read(u, buf, len, got_out);
	*got_out = 0;
	while (done < len && !u->frame_done) {
		size_t dn = len - done, sn;
		size_t hint;
		int rc;

		while (u->plain_off == u->plain_len && !u->last_seen) {
			rc = next_chunk(u);
			if (rc)
				return rc;
		}
		sn = u->plain_len - u->plain_off;
		if (!sn)
			return ufail(u, "the lz4 frame inside is cut short");
		hint = LZ4F_decompress(u->dctx, dst + done, &dn,
				       u->plain + u->plain_off, &sn, NULL);
		if (LZ4F_isError(hint))
			return ufail(u, "lz4: %s", LZ4F_getErrorName(hint));
		u->plain_off += sn;
		done += dn;
		if (hint == 0)
			u->frame_done = true;
	}
	if (u->frame_done && done == 0 &&
	    (u->plain_off != u->plain_len || !u->last_seen)) {
		size_t more = 0;
		uint8_t c;

		/* After the frame: nothing but the end of the last chunk. */
		if (u->plain_off != u->plain_len ||
		    plain_read(u, &c, 1, &more) || more)
			return ufail(u, "data after the lz4 frame");
	}
	*got_out = done;
	return 0;
}
