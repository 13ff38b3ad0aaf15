// An engine shard: something that hosts instances in one libtpms. The
// reactor talks to shards only through this interface; a shard is either the
// daemon's own engine thread or a vtpmd-engine worker process.
//
// Thread affinity: all methods on the reactor (loop) thread; completions are
// delivered on the loop thread.
#pragma once

#include <functional>
#include <string>

#include "proto/engine_messages.h"

namespace vtpm::engine {

using CompletionSink = std::function<void(Completion&&)>;

class Shard {
 public:
  virtual ~Shard() = default;
  virtual void submit(Job job) = 0;
  virtual const std::string& name() const = 0;
};

}  // namespace vtpm::engine
