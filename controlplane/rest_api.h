// The REST API for sessions: JSON under /v1, bearer-token auth, optional TLS.
// docs/api/openapi.yaml describes every endpoint, field and error this file answers.
//
//   POST   /v1/sessions         create (201 + Location)
//   GET    /v1/sessions         list (?call_id=&state=&offset=&limit=)
//   GET    /v1/sessions/{id}    one session
//   PATCH  /v1/sessions/{id}    change to_tag, media timeout, legs
//   DELETE /v1/sessions/{id}    end it; answers the final statistics
//
// Errors are always {"error":{"code":<http status>,"message":"...","field":<path or null>}}.
// A request body is validated as a whole before the SessionService sees it, so a
// refused request changes nothing.
//
// The conversion functions below are pure and may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/config.h"
#include "controlplane/session_service.h"
#include "controlplane/session_types.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace karl {

// Query parameters as httplib hands them over (httplib::Params).
using QueryParams = std::multimap<std::string, std::string>;

// Body of POST /v1/sessions. Errors are InvalidArgument with a message
// "<field path>: <what is wrong>" ("legs[0].bogus: unknown field",
// "legs[1].peer.port: must be an integer between 1 and 65535"), or "body: ..." when
// the body as a whole is wrong (invalid JSON, not an object, duplicate key).
absl::StatusOr<SessionSpec> ParseSessionSpec(const std::string& body);

// Body of PATCH /v1/sessions/{id}; errors as ParseSessionSpec.
absl::StatusOr<SessionUpdate> ParseSessionUpdate(const std::string& body);

// Query of GET /v1/sessions. Errors are InvalidArgument "<parameter>: <what is wrong>".
absl::StatusOr<SessionFilter> ParseSessionFilter(const QueryParams& query);

// The documented SessionInfo object.
nlohmann::ordered_json SessionInfoToJson(const SessionInfo& info);

// {"sessions":[...],"total":n,"offset":n,"limit":n} for a page answered to `filter`.
nlohmann::ordered_json SessionPageToJson(const SessionPage& page, const SessionFilter& filter);

// RFC 3339 UTC with milliseconds: 1700000000123 -> "2023-11-14T22:13:20.123Z".
std::string FormatRfc3339Ms(int64_t unix_ms);

// HTTP status for a SessionService (or parse) error code: InvalidArgument 400,
// NotFound 404, AlreadyExists/FailedPrecondition 409, ResourceExhausted/Unavailable 503,
// DeadlineExceeded 504, anything else 500.
int HttpStatusForCode(absl::StatusCode code);

// The field an error message names, "" when none. InvalidArgument: any leading
// "<path>: " whose path looks like a JSON field path (letters, digits, _, -, ., [n]),
// except "body". Other codes: only when the path starts with a request-body field
// (call_id, from_tag, to_tag, media_timeout_s, legs), so "session x: not found" is
// never mistaken for a field.
std::string ErrorField(const absl::Status& status);

// {"error":{"code":...,"message":...,"field":... or null}} for `status` (not OK).
nlohmann::ordered_json ErrorJson(const absl::Status& status);

// Reads a bearer-token file: one token per line; blank lines and lines starting with
// '#' are skipped; surrounding whitespace is trimmed. A token must be an RFC 6750
// b64token. Errors name the path (and line): NotFound / PermissionDenied when the
// file cannot be read, InvalidArgument for a bad line or a file without tokens.
absl::StatusOr<std::vector<std::string>> LoadBearerTokens(const std::string& path);

class RestApi {
 public:
  // Request threads serving HTTP. Each may block in the SessionService while the
  // control-plane thread answers, so a few more than the ops server's.
  static constexpr int kThreads = 8;
  // Largest request body accepted (413 beyond).
  static constexpr size_t kMaxRequestBody = size_t{1} << 20;

  // `sessions` must outlive the RestApi and be safe to call from several threads.
  RestApi(SessionService* sessions, ApiConfig config);
  ~RestApi();  // Stop()s
  RestApi(const RestApi&) = delete;
  RestApi& operator=(const RestApi&) = delete;

  // Loads config.tokens_file (when set), sets up TLS (when tls_cert_file and
  // tls_key_file are set), binds config.listen:config.port (0 = chosen by the OS) and
  // starts serving. Everything is reported here, synchronously: a tokens file error
  // (path and line), a TLS file error (path and OpenSSL's reason),
  // UnavailableError("REST API: cannot listen on 127.0.0.1:8080: Address already in
  // use"). FailedPrecondition when already started; a RestApi starts once. With
  // config.enabled false it does nothing and returns OK (port() stays 0).
  // Thread: the owner (control-plane thread), as for port() and Stop().
  absl::Status Start();

  // The bound port (useful after Start with port 0); 0 before Start.
  uint16_t port() const { return port_; }

  // Stops accepting, finishes in-flight requests and joins the server thread.
  // Idempotent; the destructor calls it.
  void Stop();

 private:
  void RegisterHandlers();
  // Answers 401 and returns false unless the request carries a valid bearer token
  // (always true without a tokens file). Request threads.
  bool Authorize(const httplib::Request& req, httplib::Response& res);
  void HandleCreate(const httplib::Request& req, httplib::Response& res);
  void HandleList(const httplib::Request& req, httplib::Response& res);
  void HandleGet(const httplib::Request& req, httplib::Response& res);
  void HandlePatch(const httplib::Request& req, httplib::Response& res);
  void HandleDelete(const httplib::Request& req, httplib::Response& res);

  SessionService* const sessions_;
  const ApiConfig config_;
  std::vector<std::string> tokens_;  // written by Start before serving, then read-only
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> listen_returned_{false};      // set by thread_ when listening ends
  std::atomic<int64_t> last_auth_warning_ms_{0};  // rate limit for rejected-token logs
  std::atomic<uint64_t> auth_failures_{0};        // rejected requests since start
  std::mutex stop_mu_;                            // serializes Stop with itself
  bool started_ = false;
  uint16_t port_ = 0;
};

}  // namespace karl
