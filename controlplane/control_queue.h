// Hands work from any thread (HTTP handlers, the ng listener) to the control-plane
// thread, which owns the session registry and the flow table, and waits for the
// answer. Thread: Call from any thread except the control-plane thread itself;
// RunPending on the control-plane thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

#include "absl/status/statusor.h"

namespace karl {

class ControlQueue {
 public:
  // Runs `fn` on the control-plane thread. DeadlineExceeded when it did not start
  // within `timeout` (it will then never run: nothing is half-applied).
  template <typename T>
  absl::StatusOr<T> Call(std::function<absl::StatusOr<T>()> fn,
                         std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    struct Slot {
      std::mutex mu;
      std::condition_variable cv;
      bool started = false;
      bool cancelled = false;
      bool done = false;
      absl::StatusOr<T> result = absl::UnknownError("not run");
    };
    auto slot = std::make_shared<Slot>();
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back([slot, fn = std::move(fn)] {
        {
          std::lock_guard<std::mutex> l(slot->mu);
          if (slot->cancelled) return;
          slot->started = true;
        }
        absl::StatusOr<T> r = fn();
        std::lock_guard<std::mutex> l(slot->mu);
        slot->result = std::move(r);
        slot->done = true;
        slot->cv.notify_all();
      });
    }
    std::unique_lock<std::mutex> lock(slot->mu);
    if (!slot->cv.wait_for(lock, timeout, [&] { return slot->done; })) {
      if (!slot->started) {
        slot->cancelled = true;
        return absl::DeadlineExceededError("the control plane did not take the request in time");
      }
      slot->cv.wait(lock, [&] { return slot->done; });  // started: wait for its answer
    }
    return std::move(slot->result);
  }

  // Control-plane thread: runs every queued task. Returns how many ran.
  size_t RunPending() {
    std::deque<std::function<void()>> batch;
    {
      std::lock_guard<std::mutex> lock(mu_);
      batch.swap(tasks_);
    }
    for (auto& t : batch) t();
    return batch.size();
  }

 private:
  std::mutex mu_;
  std::deque<std::function<void()>> tasks_;
};

}  // namespace karl
