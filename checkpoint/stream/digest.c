/* The running SHA-256 that the CHECKSUM record carries (OpenSSL EVP). */
#include "checkpoint/stream/internal.h"

#include <openssl/evp.h>

void pvm_ckpt_digest_init(struct pvm_ckpt_digest *d)
{
	d->md = NULL;
}

int pvm_ckpt_digest_start(struct pvm_ckpt_digest *d)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	if (!md)
		return -ENOMEM;
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		return -EIO;
	}
	pvm_ckpt_digest_dispose(d);
	d->md = md;
	return 0;
}

void pvm_ckpt_digest_update(struct pvm_ckpt_digest *d, const void *p, size_t n)
{
	/* EVP_DigestUpdate cannot fail for SHA-256 in the default provider. */
	if (d->md && n)
		EVP_DigestUpdate(d->md, p, n);
}

int pvm_ckpt_digest_peek(const struct pvm_ckpt_digest *d, uint8_t out[PVM_CKPT_DIGEST_LEN])
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
	    EVP_DigestFinal_ex(copy, out, &len) == 1 && len == PVM_CKPT_DIGEST_LEN)
		rc = 0;
	EVP_MD_CTX_free(copy);
	return rc;
}

void pvm_ckpt_digest_dispose(struct pvm_ckpt_digest *d)
{
	EVP_MD_CTX_free(d->md);
	d->md = NULL;
}
