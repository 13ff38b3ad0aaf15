#include "backends/xen/vchan_channel.h"

#include <nlohmann/json.hpp>

#include "proto/tpm_packet.h"
#include "proto/tpm_stream.h"
#include "proto/tpmif.h"

namespace vtpm::xen {
namespace {

constexpr std::size_t kMinRing = 1024;
constexpr std::size_t kMaxRing = 1024 * 1024;  // libxenvchan's limit (2^20)

}  // namespace

std::string VchanSpec::to_json() const {
  return nlohmann::json{{"domid", client}, {"path", xs_path}, {"read_min", read_min}, {"write_min", write_min}}.dump();
}

Result<VchanSpec> VchanSpec::from_json(const std::string& text) {
  const auto j = nlohmann::json::parse(text, nullptr, false);
  const auto bad = [](const std::string& why) { return make_error(ErrorCode::kCorrupt, "vchan setting: " + why); };
  if (!j.is_object()) return bad("not a JSON object");
  VchanSpec spec;
  if (!j.contains("domid") || !j["domid"].is_number_unsigned() || j["domid"].get<std::uint64_t>() > 0x7FEF) {
    return bad("'domid' must be a domain id");
  }
  spec.client = static_cast<DomId>(j["domid"].get<std::uint64_t>());
  if (!j.contains("path") || !j["path"].is_string() || j["path"].get<std::string>().empty() ||
      j["path"].get<std::string>().front() != '/') {
    return bad("'path' must be an absolute xenstore path");
  }
  spec.xs_path = j["path"].get<std::string>();
  for (auto [name, field] : {std::pair{"read_min", &spec.read_min}, std::pair{"write_min", &spec.write_min}}) {
    if (!j.contains(name)) continue;
    if (!j[name].is_number_unsigned() || j[name].get<std::uint64_t>() < kMinRing || j[name].get<std::uint64_t>() > kMaxRing) {
      return bad(std::string("'") + name + "' must be 1024..1048576");
    }
    *field = j[name].get<std::size_t>();
  }
  return spec;
}

VchanChannel::VchanChannel(uv_loop_t* loop, const Logger& log, Service& service, Vchans& vchans, Uuid id, VchanSpec spec)
    : loop_(loop), log_(log), service_(service), vchans_(vchans), id_(id), spec_(std::move(spec)) {}

VchanChannel::~VchanChannel() { shut(); }

std::string VchanChannel::who() const { return "vchan (domain " + std::to_string(spec_.client) + ", " + spec_.xs_path + ")"; }

Status VchanChannel::open() {
  auto server = vchans_.server_init({spec_.client, spec_.xs_path, spec_.read_min, spec_.write_min});
  if (!server) {
    error_ = server.error().message;
    return make_error(server.error().code, who() + ": " + server.error().message);
  }
  auto poll = std::make_unique<UvHandle<uv_poll_t>>();
  if (int rc = uv_poll_init(loop_, poll->get(), (*server)->fd()); rc != 0) {
    error_ = std::string("polling the event channel: ") + uv_strerror(rc);
    return make_error(ErrorCode::kIo, who() + ": " + error_);
  }
  poll->mark_live();
  poll->get()->data = this;
  uv_poll_start(poll->get(), UV_READABLE, [](uv_poll_t* h, int, int) {
    if (h->data != nullptr) static_cast<VchanChannel*>(h->data)->on_readable();
  });
  server_ = std::move(*server);
  poll_ = std::move(poll);
  error_.clear();
  ++generation_;
  in_.clear();
  out_.clear();
  busy_ = false;
  connected_ = false;
  return Status::success();
}

void VchanChannel::shut() {
  poll_.reset();  // stops polling before the server closes its fd
  server_.reset();
}

VchanStatus VchanChannel::status() const {
  return VchanStatus{spec_, server_ ? server_->state() : VchanState::kClosed, connections_, commands_, refused_, error_};
}

void VchanChannel::on_readable() {
  if (Status s = server_->wait(); !s) {
    log_.warn(id_, who() + ": " + s.error().message + "; starting over");
    return reopen();
  }
  pump();
}

void VchanChannel::pump() {
  const auto guard = shared_from_this();  // a callback may drop the last reference elsewhere
  const VchanState state = server_->state();
  if (state == VchanState::kClosed) {
    log_.info(id_, who() + ": client closed" + (busy_ ? " with a command in flight (its answer is dropped)" : ""));
    return reopen();
  }
  if (state == VchanState::kConnected && !connected_) {
    connected_ = true;
    ++connections_;
    log_.info(id_, who() + ": client connected");
  }
  if (flush()) next_command();
}

bool VchanChannel::flush() {
  while (!out_.empty()) {
    auto n = server_->write(out_);
    if (!n) {
      reopen();
      return false;
    }
    if (*n == 0) return false;  // the ring is full: the client's read notifies us
    out_.erase(out_.begin(), out_.begin() + static_cast<std::ptrdiff_t>(*n));
  }
  return true;
}

void VchanChannel::next_command() {
  if (busy_) return;
  auto instance = service_.show(id_);
  if (!instance) return refuse("instance unavailable: " + instance.error().message, tpm::kTpm2RcFailure);
  const TpmVersion version = (*instance)->version;
  const std::size_t max_packet = std::max<std::size_t>((*instance)->max_command_size, tpm::kHeaderSize);
  // Read no further than the largest frame (a send-command header in front
  // of a full packet): the ring holds the rest, which is the backpressure.
  const std::size_t cap = max_packet + 9;
  if (in_.size() < cap) {
    const std::size_t had = in_.size();
    in_.resize(cap);
    auto n = server_->read(std::span(in_).subspan(had));
    in_.resize(had + (n ? *n : 0));
    if (!n) return reopen();
  }
  auto frame = tpm::next_frame(in_, max_packet);
  if (!frame) return refuse(frame.error().message, tpm::failure_code(version, frame.error().code));
  if (!*frame) return;
  const tpm::StreamFrame f = **frame;
  engine::Bytes command(in_.begin() + static_cast<std::ptrdiff_t>(f.offset),
                        in_.begin() + static_cast<std::ptrdiff_t>(f.offset + f.length));
  in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(f.consumed));
  busy_ = true;
  ++commands_;
  std::weak_ptr<VchanChannel> weak = shared_from_this();
  service_.exec(id_, std::move(command), f.locality,
                [weak, generation = generation_, version, header = f.send_command_header](Result<ExecResult> r) {
                  auto self = weak.lock();
                  if (!self || !self->server_ || self->generation_ != generation) return;  // that client is gone
                  self->busy_ = false;
                  const engine::Bytes response =
                      r ? r->response : tpm::error_response(version, tpm::failure_code(version, r.error().code));
                  const auto framed = tpm::frame_response(response, header);
                  self->out_.insert(self->out_.end(), framed.begin(), framed.end());
                  self->pump();
                });
}

void VchanChannel::refuse(const std::string& why, std::uint32_t rc) {
  ++refused_;
  log_.warn(id_, who() + ": " + why + "; closing the connection");
  // Best effort: the client learns why if the ring has room; it is not waited for.
  auto instance = service_.show(id_);
  const TpmVersion version = instance ? (*instance)->version : TpmVersion::k20;
  const std::uint32_t code = version == TpmVersion::k12 && rc == tpm::kTpm2RcFailure ? tpm::kTpm12Fail : rc;
  const auto response = tpm::error_response(version, code);
  if (server_->buffer_space() >= response.size()) (void)server_->write(response);
  reopen();
}

void VchanChannel::reopen() {
  shut();
  if (Status s = open(); !s) log_.error(id_, s.error().message);
}

}  // namespace vtpm::xen
