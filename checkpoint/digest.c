/* The running SHA-256 that the CHECKSUM record carries (OpenSSL EVP). */
#include "checkpoint/internal.h"

#include <openssl/evp.h>

void ckpt_digest_init(struct ckpt_digest *d)
{
	d->md = NULL;
}

int ckpt_digest_start(struct ckpt_digest *d)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	if (!md)
		return -ENOMEM;
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		return -EIO;
	}
	ckpt_digest_dispose(d);
	d->md = md;
	return 0;
}

void ckpt_digest_update(struct ckpt_digest *d, const void *p, size_t n)
{
	/* EVP_DigestUpdate cannot fail for SHA-256 in the default provider. */
	if (d->md && n)
		EVP_DigestUpdate(d->md, p, n);
}

int ckpt_digest_peek(const struct ckpt_digest *d, uint8_t out[CKPT_DIGEST_LEN])
{
	EVP_MD_CTX *copy;
	unsigned int len = 0;
	int rc = -EIO;

	if (!d->md)
		return -EINVAL;
	copy = EVP_MD_CTX_new();
	if (!copy)
		return -ENOMEM;
	if (EVP_MD_CTX_copy_ex(copy, d->md) == 1 &&
	    EVP_DigestFinal_ex(copy, out, &len) == 1 && len == CKPT_DIGEST_LEN)
		rc = 0;
	EVP_MD_CTX_free(copy);
	return rc;
}

void ckpt_digest_dispose(struct ckpt_digest *d)
{
	EVP_MD_CTX_free(d->md);
	d->md = NULL;
}
