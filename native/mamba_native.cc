// Mamba MQ native helpers for the segment log: shared file mappings and CRC32C.
// Kept deliberately small: everything that can be written in TypeScript is.
#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace {

// ---------------------------------------------------------------- CRC32C (Castagnoli)
constexpr uint32_t kPolynomialReflected = 0x82F63B78u;
uint32_t crcTable[8][256];

void buildTables() {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; bit++) crc = (crc >> 1) ^ (kPolynomialReflected & (0u - (crc & 1u)));
    crcTable[0][i] = crc;
  }
  for (uint32_t i = 0; i < 256; i++) {
    for (int t = 1; t < 8; t++) crcTable[t][i] = (crcTable[t - 1][i] >> 8) ^ crcTable[0][crcTable[t - 1][i] & 0xFF];
  }
}

// Slicing-by-8: the portable fallback when the CPU lacks the CRC32 instruction.
uint32_t crcSoftware(uint32_t crc, const uint8_t* data, size_t length) {
  while (length >= 8) {
    uint64_t word;
    std::memcpy(&word, data, 8);  // little-endian hosts only (x86-64, arm64)
    word ^= crc;
    crc = crcTable[7][word & 0xFF] ^ crcTable[6][(word >> 8) & 0xFF] ^ crcTable[5][(word >> 16) & 0xFF] ^
          crcTable[4][(word >> 24) & 0xFF] ^ crcTable[3][(word >> 32) & 0xFF] ^ crcTable[2][(word >> 40) & 0xFF] ^
          crcTable[1][(word >> 48) & 0xFF] ^ crcTable[0][word >> 56];
    data += 8;
    length -= 8;
  }
  while (length--) crc = (crc >> 8) ^ crcTable[0][(crc ^ *data++) & 0xFF];
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t crcHardware(uint32_t crc, const uint8_t* data, size_t length) {
  uint64_t crc64 = crc;
  while (length >= 8) {
    uint64_t word;
    std::memcpy(&word, data, 8);
    crc64 = _mm_crc32_u64(crc64, word);
    data += 8;
    length -= 8;
  }
  crc = static_cast<uint32_t>(crc64);
  while (length--) crc = _mm_crc32_u8(crc, *data++);
  return crc;
}
bool hardwareAvailable() { return __builtin_cpu_supports("sse4.2"); }
#else
uint32_t crcHardware(uint32_t crc, const uint8_t* data, size_t length) { return crcSoftware(crc, data, length); }
bool hardwareAvailable() { return false; }
#endif

using CrcFunction = uint32_t (*)(uint32_t, const uint8_t*, size_t);
CrcFunction crcChosen = crcSoftware;

bool readBytes(const Napi::CallbackInfo& info, size_t index, const uint8_t** data, size_t* length) {
  if (info.Length() <= index || !info[index].IsTypedArray()) return false;
  Napi::TypedArray array = info[index].As<Napi::TypedArray>();
  if (array.TypedArrayType() != napi_uint8_array) return false;
  Napi::Uint8Array bytes = array.As<Napi::Uint8Array>();
  *data = bytes.Data();
  *length = bytes.ByteLength();
  return true;
}

Napi::Value crcWith(const Napi::CallbackInfo& info, CrcFunction function) {
  Napi::Env env = info.Env();
  const uint8_t* data = nullptr;
  size_t length = 0;
  if (!readBytes(info, 0, &data, &length)) {
    Napi::TypeError::New(env, "crc32c: argument 0 must be a Uint8Array").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uint32_t seed = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  uint32_t crc = function(~seed, data, length);
  return Napi::Number::New(env, static_cast<double>(~crc));
}

Napi::Value Crc32c(const Napi::CallbackInfo& info) { return crcWith(info, crcChosen); }
Napi::Value Crc32cSoftware(const Napi::CallbackInfo& info) { return crcWith(info, crcSoftware); }

// ---------------------------------------------------------------- shared mappings
void unmapOnCollect(Napi::Env, uint8_t* address, size_t* length) {
  munmap(address, *length);
  delete length;
}

// map(fd, length): a Buffer over MAP_SHARED read/write pages of the file. The pages are
// unmapped when the last view of the Buffer is garbage-collected, never earlier, so a slice
// handed to a reader can never point at unmapped memory.
Napi::Value Map(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "map(fd, length): numbers expected").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  double lengthNumber = info[1].As<Napi::Number>().DoubleValue();
  if (!(lengthNumber > 0) || lengthNumber > 4294967296.0) {
    Napi::RangeError::New(env, "map: length out of range").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  size_t length = static_cast<size_t>(lengthNumber);
  void* address = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (address == MAP_FAILED) {
    Napi::Error::New(env, std::string("mmap failed: ") + std::strerror(errno)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(address), length, unmapOnCollect, new size_t(length));
}

// release(buffer): drop the file behind a mapping now (so a deleted segment's disk space is
// returned at once) by laying anonymous read-only zero pages over the same addresses. Views still
// held by readers stay valid memory and read as zeros; the final munmap still happens on collect.
Napi::Value Release(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBuffer()) {
    Napi::TypeError::New(env, "release(buffer): Buffer expected").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Buffer<uint8_t> buffer = info[0].As<Napi::Buffer<uint8_t>>();
  void* address = mmap(buffer.Data(), buffer.Length(), PROT_READ, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (address == MAP_FAILED) {
    Napi::Error::New(env, std::string("release failed: ") + std::strerror(errno)).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  buildTables();
  crcChosen = hardwareAvailable() ? crcHardware : crcSoftware;
  exports.Set("map", Napi::Function::New(env, Map));
  exports.Set("release", Napi::Function::New(env, Release));
  exports.Set("crc32c", Napi::Function::New(env, Crc32c));
  exports.Set("crc32cSoftware", Napi::Function::New(env, Crc32cSoftware));
  exports.Set("crc32cHardware", Napi::Boolean::New(env, crcChosen == crcHardware && hardwareAvailable()));
  exports.Set("pageBytes", Napi::Number::New(env, static_cast<double>(sysconf(_SC_PAGESIZE))));
  return exports;
}

}  // namespace

NODE_API_MODULE(mamba_native, Init)
