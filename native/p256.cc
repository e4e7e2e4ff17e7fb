// mtlskit's native P-256 verifier: one ECDSA P-256/SHA-256 signature check through the OpenSSL
// that Node itself links (its headers under Node's include directory, its symbols in the node
// binary), without node:crypto's per-call key import.
//
// Why it exists (measured, ARCHITECTURE.md): on Node 20 with OpenSSL 3.0, checking a request's
// self-signature through node:crypto (createPublicKey of the JWK, then crypto.verify) costs about
// 340 us per request on the 2-vCPU CI machine, where `openssl speed ecdsap256` verifies in about
// 100 us: OpenSSL 3.0 builds an EC_GROUP for the imported key and again when EVP_DigestVerifyInit
// exports it to its provider. Here each thread keeps one P-256 EC_KEY and only its point changes:
// 115 us per request. (Signing with the CA's key stays in node:crypto: measured 58 against 40 us
// natively, too little to hand the CA's private key to code of our own.)
//
// The check is OpenSSL's own (ECDSA_do_verify), with the signature held to DER as OpenSSL's
// EVP path holds it (decoded, encoded again, and refused unless the bytes are identical) and the
// point decoded by EC_POINT_oct2point (on the curve, not the point at infinity).
// test/native.test.ts compares every answer with node:crypto's.
#include <node_api.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/sha.h>
#include <string.h>

namespace {

// Verifier is one thread's P-256 key, reused: only its public point changes per check.
struct Verifier {
  EC_KEY* key = nullptr;
  EC_POINT* point = nullptr;
  BN_CTX* ctx = nullptr;
  ~Verifier() {
    EC_POINT_free(point);
    EC_KEY_free(key);
    BN_CTX_free(ctx);
  }
  // ready makes the key, its point and a BN_CTX on first use; a part OpenSSL could not make stays
  // missing, and every later check then fails the same way (never a null pointer used).
  bool ready() {
    if (key == nullptr) {
      key = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
      if (key == nullptr) return false;
      point = EC_POINT_new(EC_KEY_get0_group(key));
      ctx = BN_CTX_new();
    }
    return point != nullptr && ctx != nullptr;
  }
};

void freeVerifier(void* data) { delete static_cast<Verifier*>(data); }

bool bytesOf(napi_env env, napi_value v, const unsigned char** p, size_t* n) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  void* data;
  if (napi_get_typedarray_info(env, v, &type, n, &data, &buffer, &offset) != napi_ok) return false;
  *p = static_cast<const unsigned char*>(data);
  return type == napi_uint8_array;
}

// check: 1 valid, 0 invalid (a point, a signature or a check that fails), -1 OpenSSL could not run.
int check(Verifier* v, const unsigned char* point, size_t pointLen, const unsigned char* message, size_t messageLen,
          const unsigned char* signature, size_t signatureLen) {
  if (!v->ready()) return -1;
  // A point that is not on the curve, or the point at infinity, is no key.
  const EC_GROUP* group = EC_KEY_get0_group(v->key);
  if (EC_POINT_oct2point(group, v->point, point, pointLen, v->ctx) != 1) return 0;
  if (EC_POINT_is_at_infinity(group, v->point) || EC_KEY_set_public_key(v->key, v->point) != 1) return 0;
  const unsigned char* p = signature;
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(signatureLen));
  if (sig == nullptr) return 0;
  unsigned char* der = nullptr;
  int derLen = i2d_ECDSA_SIG(sig, &der);
  int ok = 0;
  if (derLen > 0 && static_cast<size_t>(derLen) == signatureLen && memcmp(der, signature, signatureLen) == 0) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(message, messageLen, digest);
    ok = ECDSA_do_verify(digest, sizeof digest, sig, v->key) == 1 ? 1 : 0;
  }
  OPENSSL_free(der);
  ECDSA_SIG_free(sig);
  return ok;
}

// verify(point, message, signature): whether `signature` (DER ECDSA-Sig-Value) over SHA-256 of
// `message` verifies with the P-256 public key `point` (SEC 1 encoded). All three Uint8Arrays.
napi_value Verify(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  Verifier* v = nullptr;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, reinterpret_cast<void**>(&v)) != napi_ok) return nullptr;
  const unsigned char *point, *message, *signature;
  size_t pointLen, messageLen, signatureLen;
  if (argc != 3 || !bytesOf(env, argv[0], &point, &pointLen) || !bytesOf(env, argv[1], &message, &messageLen) ||
      !bytesOf(env, argv[2], &signature, &signatureLen)) {
    napi_throw_type_error(env, nullptr, "verify(point, message, signature) takes three Uint8Arrays");
    return nullptr;
  }
  // OpenSSL queues an error for each refusal (a point off the curve, a signature that is not
  // DER): they are dropped here, or node:crypto's next call on this thread would report them.
  ERR_set_mark();
  int ok = check(v, point, pointLen, message, messageLen, signature, signatureLen);
  ERR_pop_to_mark();
  if (ok < 0) {
    napi_throw_error(env, nullptr, "OpenSSL could not make a P-256 key");
    return nullptr;
  }
  napi_value result;
  napi_get_boolean(env, ok == 1, &result);
  return result;
}

napi_value Init(napi_env env, napi_value exports) {
  // One Verifier per module instance (each thread that loads the addon), freed with it.
  Verifier* v = new Verifier();
  if (napi_add_env_cleanup_hook(env, freeVerifier, v) != napi_ok) {
    delete v;
    return nullptr;
  }
  napi_value fn;
  if (napi_create_function(env, "verify", NAPI_AUTO_LENGTH, Verify, v, &fn) != napi_ok) return nullptr;
  napi_set_named_property(env, exports, "verify", fn);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
