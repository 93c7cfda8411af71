// What the REST API (and later the ng protocol) asks of the session manager.
// Thread: every method may be called from any thread; implementations run the
// request on the control-plane thread and wait for its answer.
#pragma once

#include "absl/status/statusor.h"
#include "controlplane/session_types.h"

namespace karl {

class SessionService {
 public:
  virtual ~SessionService() = default;
  // InvalidArgument (message names the field, e.g. "legs[1].peer.port: ..."),
  // ResourceExhausted (no free ports), NotFound (unknown interface).
  virtual absl::StatusOr<SessionInfo> CreateSession(const SessionSpec& spec) = 0;
  virtual absl::StatusOr<SessionInfo> GetSession(const std::string& id) = 0;
  virtual absl::StatusOr<SessionPage> ListSessions(const SessionFilter& filter) = 0;
  virtual absl::StatusOr<SessionInfo> UpdateSession(const std::string& id,
                                                    const SessionUpdate& update) = 0;
  // Ends the session (reason "deleted") and returns its final statistics. Deleting an
  // ended or unknown id is NotFound.
  virtual absl::StatusOr<SessionInfo> DeleteSession(const std::string& id) = 0;
};

}  // namespace karl
