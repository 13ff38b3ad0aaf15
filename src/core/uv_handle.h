// RAII for libuv handles. libuv's contract: a handle's memory may be freed
// only in (or after) its close callback, and handles never move. UvHandle
// owns a heap-allocated handle and, on destruction, closes it and frees it
// from the close callback. Callbacks stop at uv_close, so handle->data may
// point at the owner without outliving it.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace vtpm {

template <typename T>
class UvHandle {
 public:
  UvHandle() : handle_(std::make_unique<T>()) {}
  ~UvHandle() { close(); }
  UvHandle(const UvHandle&) = delete;
  UvHandle& operator=(const UvHandle&) = delete;

  T* get() const { return handle_.get(); }
  uv_handle_t* base() const { return reinterpret_cast<uv_handle_t*>(handle_.get()); }
  uv_stream_t* stream() const { return reinterpret_cast<uv_stream_t*>(handle_.get()); }

  // Call after the uv_*_init that made the handle live; until then the
  // handle is plain memory and is freed directly.
  void mark_live() { live_ = true; }
  bool live() const { return live_ && handle_ != nullptr; }

  void close() {
    if (!handle_) return;
    if (!live_) {
      handle_.reset();
      return;
    }
    T* raw = handle_.release();
    reinterpret_cast<uv_handle_t*>(raw)->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(raw), [](uv_handle_t* h) { std::unique_ptr<T> reclaim(reinterpret_cast<T*>(h)); });
  }

 private:
  std::unique_ptr<T> handle_;
  bool live_ = false;
};

// One uv_write with its own buffer: the buffer lives until the write
// callback, then both are freed there.
struct OwnedWrite {
  uv_write_t request{};
  std::vector<std::uint8_t> bytes;
};

// Writes `bytes` to `stream`. A failed write shows up as an error on the
// stream's next read, which is where connections are torn down. Returns the
// libuv error of the submission (0 = queued).
inline int write_owned(uv_stream_t* stream, std::vector<std::uint8_t> bytes) {
  auto write = std::make_unique<OwnedWrite>();
  write->bytes = std::move(bytes);
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(write->bytes.data()),
                             static_cast<unsigned int>(write->bytes.size()));
  const int rc = uv_write(&write->request, stream, &buf, 1, [](uv_write_t* req, int) {
    std::unique_ptr<OwnedWrite> reclaim(reinterpret_cast<OwnedWrite*>(req));
  });
  if (rc == 0) write.release();  // reclaimed in the write callback
  return rc;
}

}  // namespace vtpm
