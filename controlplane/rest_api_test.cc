#include "controlplane/rest_api.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace karl {
namespace {

using Json = nlohmann::json;

constexpr char kJson[] = "application/json";

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

// Inside a FakeSessionService method holding mu_: the injected failure, once.
#define KARL_FAKE_FAIL_OR_THROW()                                             \
  do {                                                                        \
    if (throw_next_) {                                                        \
      throw_next_ = false;                                                    \
      throw std::runtime_error("session manager exploded");                   \
    }                                                                         \
    if (!fail_next_.ok()) return std::exchange(fail_next_, absl::OkStatus()); \
  } while (0)

// An in-memory stand-in for the control-plane side: keeps sessions in a map, records
// what it was asked, and can be told to fail or throw on the next call.
class FakeSessionService : public SessionService {
 public:
  absl::StatusOr<SessionInfo> CreateSession(const SessionSpec& spec) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++calls_;
    last_spec_ = spec;
    KARL_FAKE_FAIL_OR_THROW();
    SessionInfo info;
    info.id = "s" + std::to_string(next_id_++);
    info.call_id = spec.call_id;
    info.from_tag = spec.from_tag;
    info.to_tag = spec.to_tag;
    info.state = "active";
    info.created_unix_ms = 1700000000123;
    info.last_signal_unix_ms = 1700000000123;
    info.media_timeout_s = spec.media_timeout_s == 0 ? 60 : spec.media_timeout_s;
    for (size_t i = 0; i < spec.legs.size(); ++i) {
      const LegSpec& s = spec.legs[i];
      const bool v6 =
          s.family ? *s.family == IpAddress::Family::kV6 : s.peer && s.peer->address.is_v6();
      LegInfo leg;
      leg.index = static_cast<unsigned>(i);
      leg.interface = s.interface.empty() ? "ext0" : s.interface;
      leg.local = {Ip(v6 ? "2001:db8::1" : "198.51.100.1"), static_cast<uint16_t>(30000 + 2 * i)};
      leg.local_rtcp_port = s.rtcp_mux ? leg.local.port : leg.local.port + 1;
      leg.peer = s.peer;
      if (s.peer_rtcp_port) {
        leg.peer_rtcp_port = *s.peer_rtcp_port;
      } else if (s.peer) {
        leg.peer_rtcp_port = s.rtcp_mux ? s.peer->port : s.peer->port + 1;
      }
      leg.rtcp_mux = s.rtcp_mux;
      leg.strict_source = s.strict_source;
      leg.asymmetric = s.asymmetric;
      leg.dscp = s.dscp;
      info.legs.push_back(leg);
    }
    sessions_[info.id] = info;
    order_.push_back(info.id);
    return info;
  }

  absl::StatusOr<SessionInfo> GetSession(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++calls_;
    KARL_FAKE_FAIL_OR_THROW();
    const auto it = sessions_.find(id);
    if (it == sessions_.end()) return absl::NotFoundError("session " + id + " not found");
    return it->second;
  }

  absl::StatusOr<SessionPage> ListSessions(const SessionFilter& filter) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++calls_;
    last_filter_ = filter;
    KARL_FAKE_FAIL_OR_THROW();
    SessionPage page;
    for (const std::string& id : order_) {
      const SessionInfo& s = sessions_.at(id);
      if (!filter.call_id.empty() && s.call_id != filter.call_id) continue;
      if (!filter.state.empty() && s.state != filter.state) continue;
      if (page.total >= filter.offset && page.sessions.size() < filter.limit) {
        page.sessions.push_back(s);
      }
      ++page.total;
    }
    return page;
  }

  absl::StatusOr<SessionInfo> UpdateSession(const std::string& id,
                                            const SessionUpdate& update) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++calls_;
    last_update_ = update;
    KARL_FAKE_FAIL_OR_THROW();
    const auto it = sessions_.find(id);
    if (it == sessions_.end()) return absl::NotFoundError("session " + id + " not found");
    SessionInfo& s = it->second;
    if (update.to_tag) s.to_tag = *update.to_tag;
    if (update.media_timeout_s) s.media_timeout_s = *update.media_timeout_s;
    for (size_t i = 0; i < update.legs.size() && i < s.legs.size(); ++i) {
      if (!update.legs[i]) continue;
      const LegUpdate& u = *update.legs[i];
      LegInfo& leg = s.legs[i];
      if (u.peer) leg.peer = u.peer;
      if (u.peer_rtcp_port) leg.peer_rtcp_port = *u.peer_rtcp_port;
      if (u.strict_source) leg.strict_source = *u.strict_source;
      if (u.asymmetric) leg.asymmetric = *u.asymmetric;
      if (u.dscp) leg.dscp = u.dscp;
    }
    s.last_signal_unix_ms = 1700000005000;
    return s;
  }

  absl::StatusOr<SessionInfo> DeleteSession(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++calls_;
    KARL_FAKE_FAIL_OR_THROW();
    const auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second.state != "active") {
      return absl::NotFoundError("session " + id + " not found");
    }
    SessionInfo& s = it->second;
    s.state = "ended";
    s.end_reason = "deleted";
    // Final statistics as the control plane would have collected them.
    StreamStats& rtp = s.legs[0].rtp;
    rtp.packets = 1500;
    rtp.bytes = 258000;
    rtp.drops = 3;
    rtp.drops_by_reason[static_cast<size_t>(DropReason::kStrictSource)] = 2;
    rtp.drops_by_reason[static_cast<size_t>(DropReason::kRtpBadVersion)] = 1;
    rtp.last_packet_age_s = 0.25;
    rtp.ssrc = 0xDEADBEEF;
    rtp.ssrc_changes = 1;
    rtp.expected = 1502;
    rtp.lost = 2;
    rtp.jitter_ms = 1.5;
    s.legs[1].rtcp.packets = 7;
    return s;
  }

  void FailNext(absl::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_next_ = std::move(status);
  }
  void ThrowNext() {
    std::lock_guard<std::mutex> lock(mu_);
    throw_next_ = true;
  }
  int calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  SessionSpec last_spec() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_spec_;
  }
  SessionUpdate last_update() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_update_;
  }
  SessionFilter last_filter() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_filter_;
  }

 private:
  std::mutex mu_;
  int calls_ = 0;
  int next_id_ = 1;
  absl::Status fail_next_;
  bool throw_next_ = false;
  std::map<std::string, SessionInfo> sessions_;
  std::vector<std::string> order_;  // creation order, for listing
  SessionSpec last_spec_;
  SessionUpdate last_update_;
  SessionFilter last_filter_;
};

// A body with one IPv4 leg with a given peer and one IPv6 leg that latches.
std::string SampleCreateBody() {
  return R"({
    "call_id": "a84b4c76e66710@pc33.example.com",
    "from_tag": "1928301774",
    "media_timeout_s": 45,
    "legs": [
      {"peer": {"address": "198.51.100.2", "port": 40000}, "peer_rtcp_port": 40001,
       "interface": "ext0", "family": "ipv4", "rtcp_mux": false, "strict_source": true,
       "asymmetric": true, "dscp": 46},
      {"peer": null, "family": "ipv6", "rtcp_mux": true}
    ]})";
}

// A fresh directory for files a test writes; removed with its files by the fixture.
class TempDir {
 public:
  TempDir() {
    std::string templ = ::testing::TempDir() + "karl-rest-XXXXXX";
    path_ = mkdtemp(templ.data()) != nullptr ? templ : "";
  }
  ~TempDir() {
    for (const std::string& f : files_) unlink(f.c_str());
    if (!path_.empty()) rmdir(path_.c_str());
  }
  std::string Write(const std::string& name, const std::string& content) {
    const std::string file = path_ + "/" + name;
    std::ofstream(file) << content;
    files_.push_back(file);
    return file;
  }
  std::string Path(const std::string& name) {
    files_.push_back(path_ + "/" + name);
    return files_.back();
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

ApiConfig LoopbackConfig() {
  ApiConfig config;
  config.listen = Ip("127.0.0.1");
  config.port = 0;
  return config;
}

Json BodyOf(const httplib::Result& res) { return Json::parse(res->body); }

// The error object of a response, checked for the documented shape.
Json ErrorOf(const httplib::Result& res) {
  const Json body = Json::parse(res->body);
  EXPECT_EQ(res->get_header_value("Content-Type"), kJson);
  EXPECT_EQ(body.size(), 1u) << body;
  const Json& error = body.at("error");
  EXPECT_EQ(error.at("code"), res->status) << body;
  EXPECT_TRUE(error.at("message").is_string()) << body;
  EXPECT_TRUE(error.at("field").is_null() || error.at("field").is_string()) << body;
  return error;
}

class RestApiTest : public ::testing::Test {
 protected:
  void SetUp() override { StartApi(LoopbackConfig()); }

  void StartApi(const ApiConfig& config) {
    client_.reset();
    api_ = std::make_unique<RestApi>(&fake_, config);
    const absl::Status started = api_->Start();
    ASSERT_TRUE(started.ok()) << started;
    ASSERT_NE(api_->port(), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", api_->port());
  }

  httplib::Result Create(const std::string& body) {
    return client_->Post("/v1/sessions", body, kJson);
  }

  // Creates a session and returns its id.
  std::string CreateOk(const std::string& call_id) {
    const std::string body = R"({"call_id": ")" + call_id + R"(", "legs": [{}, {}]})";
    auto res = Create(body);
    EXPECT_TRUE(res);
    if (!res) return "";
    EXPECT_EQ(res->status, 201) << res->body;
    return BodyOf(res).at("id").get<std::string>();
  }

  FakeSessionService fake_;
  std::unique_ptr<RestApi> api_;
  std::unique_ptr<httplib::Client> client_;
};

// ------------------------------------------------------------------ CRUD over HTTP

TEST_F(RestApiTest, CreateAnswers201WithLocationAndTheSession) {
  auto res = Create(SampleCreateBody());
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  ASSERT_EQ(res->status, 201) << res->body;
  EXPECT_EQ(res->get_header_value("Content-Type"), kJson);
  const Json body = BodyOf(res);
  EXPECT_EQ(res->get_header_value("Location"), "/v1/sessions/" + body.at("id").get<std::string>());
  EXPECT_EQ(body.at("call_id"), "a84b4c76e66710@pc33.example.com");
  EXPECT_EQ(body.at("from_tag"), "1928301774");
  EXPECT_EQ(body.at("to_tag"), "");
  EXPECT_EQ(body.at("state"), "active");
  EXPECT_TRUE(body.at("end_reason").is_null());
  EXPECT_EQ(body.at("created_at"), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(body.at("last_signal_at"), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(body.at("media_timeout_s"), 45);

  const Json& legs = body.at("legs");
  ASSERT_EQ(legs.size(), 2u);
  EXPECT_EQ(legs[0].at("index"), 0);
  EXPECT_EQ(legs[0].at("interface"), "ext0");
  EXPECT_EQ(legs[0].at("local"), Json({{"address", "198.51.100.1"}, {"port", 30000}}));
  EXPECT_EQ(legs[0].at("local_rtcp_port"), 30001);
  EXPECT_EQ(legs[0].at("peer"), Json({{"address", "198.51.100.2"}, {"port", 40000}}));
  EXPECT_EQ(legs[0].at("peer_rtcp_port"), 40001);
  EXPECT_EQ(legs[0].at("latched"), false);
  EXPECT_EQ(legs[0].at("rtcp_mux"), false);
  EXPECT_EQ(legs[0].at("strict_source"), true);
  EXPECT_EQ(legs[0].at("asymmetric"), true);
  EXPECT_EQ(legs[0].at("dscp"), 46);
  EXPECT_EQ(legs[0].at("stats").at("rtp").at("packets"), 0);
  EXPECT_TRUE(legs[0].at("stats").at("rtp").at("last_packet_age_s").is_null());
  EXPECT_TRUE(legs[1].at("peer").is_null());  // latches
  EXPECT_EQ(legs[1].at("local").at("address"), "2001:db8::1");
  EXPECT_EQ(legs[1].at("local_rtcp_port"), 30002);  // rtcp-mux: same as RTP
  EXPECT_EQ(legs[1].at("rtcp_mux"), true);
  EXPECT_TRUE(legs[1].at("dscp").is_null());

  // What reached the session manager.
  const SessionSpec spec = fake_.last_spec();
  EXPECT_EQ(spec.call_id, "a84b4c76e66710@pc33.example.com");
  EXPECT_EQ(spec.media_timeout_s, 45u);
  ASSERT_EQ(spec.legs.size(), 2u);
  ASSERT_TRUE(spec.legs[0].peer.has_value());
  EXPECT_EQ(*spec.legs[0].peer, (Endpoint{Ip("198.51.100.2"), 40000}));
  EXPECT_EQ(spec.legs[0].peer_rtcp_port, 40001);
  EXPECT_EQ(spec.legs[0].interface, "ext0");
  EXPECT_EQ(spec.legs[0].family, IpAddress::Family::kV4);
  EXPECT_TRUE(spec.legs[0].strict_source);
  EXPECT_TRUE(spec.legs[0].asymmetric);
  EXPECT_EQ(spec.legs[0].dscp, 46);
  EXPECT_FALSE(spec.legs[1].peer.has_value());
  EXPECT_EQ(spec.legs[1].family, IpAddress::Family::kV6);
  EXPECT_TRUE(spec.legs[1].rtcp_mux);
  EXPECT_FALSE(spec.legs[1].dscp.has_value());
}

TEST_F(RestApiTest, CreateWithIpv6PeersRoundTripsCanonicalAddresses) {
  auto res = Create(R"({"call_id": "v6call", "legs": [
      {"peer": {"address": "2001:DB8:0:0::2", "port": 5004}},
      {"peer": {"address": "2001:db8::3", "port": 65535}, "peer_rtcp_port": 5005}]})");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  const Json legs = BodyOf(res).at("legs");
  EXPECT_EQ(legs[0].at("peer"), Json({{"address", "2001:db8::2"}, {"port", 5004}}));
  EXPECT_EQ(legs[0].at("local").at("address"), "2001:db8::1");
  EXPECT_EQ(legs[1].at("peer"), Json({{"address", "2001:db8::3"}, {"port", 65535}}));
  EXPECT_EQ(legs[1].at("peer_rtcp_port"), 5005);
  EXPECT_EQ(fake_.last_spec().legs[0].peer->address, Ip("2001:db8::2"));
}

TEST_F(RestApiTest, GetReturnsTheSessionAnd404ForAnUnknownId) {
  const std::string id = CreateOk("call-get");
  auto res = client_->Get("/v1/sessions/" + id);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(BodyOf(res).at("id"), id);
  EXPECT_EQ(BodyOf(res).at("call_id"), "call-get");

  res = client_->Get("/v1/sessions/nope");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  const Json error = ErrorOf(res);
  EXPECT_EQ(error.at("message"), "session nope not found");
  EXPECT_TRUE(error.at("field").is_null());
}

TEST_F(RestApiTest, ListFiltersAndPages) {
  const std::string a1 = CreateOk("call-a");
  const std::string b1 = CreateOk("call-b");
  const std::string a2 = CreateOk("call-a");
  ASSERT_EQ(client_->Delete("/v1/sessions/" + a1)->status, 200);

  auto res = client_->Get("/v1/sessions");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  Json body = BodyOf(res);
  EXPECT_EQ(body.at("total"), 3);
  EXPECT_EQ(body.at("offset"), 0);
  EXPECT_EQ(body.at("limit"), 100);
  ASSERT_EQ(body.at("sessions").size(), 3u);
  EXPECT_EQ(body.at("sessions")[1].at("id"), b1);

  res = client_->Get("/v1/sessions?call_id=call-a");
  body = BodyOf(res);
  EXPECT_EQ(body.at("total"), 2);
  EXPECT_EQ(fake_.last_filter().call_id, "call-a");

  res = client_->Get("/v1/sessions?call_id=call-a&state=active");
  body = BodyOf(res);
  EXPECT_EQ(body.at("total"), 1);
  ASSERT_EQ(body.at("sessions").size(), 1u);
  EXPECT_EQ(body.at("sessions")[0].at("id"), a2);

  res = client_->Get("/v1/sessions?state=ended");
  body = BodyOf(res);
  ASSERT_EQ(body.at("sessions").size(), 1u);
  EXPECT_EQ(body.at("sessions")[0].at("id"), a1);
  EXPECT_EQ(body.at("sessions")[0].at("end_reason"), "deleted");

  res = client_->Get("/v1/sessions?offset=1&limit=1");
  body = BodyOf(res);
  EXPECT_EQ(body.at("total"), 3);
  EXPECT_EQ(body.at("offset"), 1);
  EXPECT_EQ(body.at("limit"), 1);
  ASSERT_EQ(body.at("sessions").size(), 1u);
  EXPECT_EQ(body.at("sessions")[0].at("id"), b1);
  EXPECT_EQ(fake_.last_filter().offset, 1u);
  EXPECT_EQ(fake_.last_filter().limit, 1u);

  res = client_->Get("/v1/sessions?limit=1000&offset=5");
  EXPECT_EQ(res->status, 200);
  EXPECT_TRUE(BodyOf(res).at("sessions").empty());
}

TEST_F(RestApiTest, ListRefusesBadQueryParameters) {
  const struct {
    const char* query;
    const char* field;
  } kCases[] = {
      {"limit=0", "limit"},    {"limit=1001", "limit"},      {"limit=ten", "limit"},
      {"offset=-1", "offset"}, {"offset=+1", "offset"},      {"state=gone", "state"},
      {"sort=id", "sort"},     {"limit=1&limit=2", "limit"},
  };
  const int calls_before = fake_.calls();
  for (const auto& c : kCases) {
    auto res = client_->Get(std::string("/v1/sessions?") + c.query);
    ASSERT_TRUE(res) << c.query;
    EXPECT_EQ(res->status, 400) << c.query;
    EXPECT_EQ(ErrorOf(res).at("field"), c.field) << c.query;
  }
  EXPECT_EQ(fake_.calls(), calls_before);
}

TEST_F(RestApiTest, PatchChangesTheSession) {
  const std::string id = CreateOk("call-patch");
  auto res = client_->Patch("/v1/sessions/" + id, R"({
      "to_tag": "as7d9f", "media_timeout_s": 120,
      "legs": [null, {"peer": {"address": "203.0.113.9", "port": 6000}, "peer_rtcp_port": 6001,
                      "strict_source": true, "asymmetric": false, "dscp": 34}]})",
                            kJson);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const Json body = BodyOf(res);
  EXPECT_EQ(body.at("to_tag"), "as7d9f");
  EXPECT_EQ(body.at("media_timeout_s"), 120);
  EXPECT_EQ(body.at("last_signal_at"), "2023-11-14T22:13:25.000Z");
  EXPECT_TRUE(body.at("legs")[0].at("peer").is_null());
  EXPECT_EQ(body.at("legs")[1].at("peer"), Json({{"address", "203.0.113.9"}, {"port", 6000}}));
  EXPECT_EQ(body.at("legs")[1].at("dscp"), 34);

  const SessionUpdate update = fake_.last_update();
  EXPECT_EQ(update.to_tag, "as7d9f");
  EXPECT_EQ(update.media_timeout_s, 120u);
  ASSERT_EQ(update.legs.size(), 2u);
  EXPECT_FALSE(update.legs[0].has_value());
  ASSERT_TRUE(update.legs[1].has_value());
  EXPECT_EQ(update.legs[1]->peer, (Endpoint{Ip("203.0.113.9"), 6000}));
  EXPECT_EQ(update.legs[1]->peer_rtcp_port, 6001);
  EXPECT_EQ(update.legs[1]->strict_source, true);
  EXPECT_EQ(update.legs[1]->asymmetric, false);
  EXPECT_EQ(update.legs[1]->dscp, 34);

  res = client_->Patch("/v1/sessions/unknown", "{}", kJson);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  ErrorOf(res);
}

TEST_F(RestApiTest, PatchRefusesNullForAFieldAndTouchesNothing) {
  const std::string id = CreateOk("call-patch-null");
  const int calls_before = fake_.calls();
  auto res = client_->Patch("/v1/sessions/" + id, R"({"legs": [{"dscp": null}]})", kJson);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(ErrorOf(res).at("field"), "legs[0].dscp");
  EXPECT_EQ(fake_.calls(), calls_before);
}

TEST_F(RestApiTest, DeleteReturnsFinalStatistics) {
  const std::string id = CreateOk("call-delete");
  auto res = client_->Delete("/v1/sessions/" + id);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const Json body = BodyOf(res);
  EXPECT_EQ(body.at("state"), "ended");
  EXPECT_EQ(body.at("end_reason"), "deleted");
  const Json& rtp = body.at("legs")[0].at("stats").at("rtp");
  EXPECT_EQ(rtp.at("packets"), 1500);
  EXPECT_EQ(rtp.at("bytes"), 258000);
  EXPECT_EQ(rtp.at("drops"), 3);
  EXPECT_EQ(rtp.at("drops_by_reason"), Json({{"strict_source", 2}, {"rtp_bad_version", 1}}));
  EXPECT_DOUBLE_EQ(rtp.at("last_packet_age_s").get<double>(), 0.25);
  EXPECT_EQ(rtp.at("ssrc"), 0xDEADBEEFu);
  EXPECT_EQ(rtp.at("ssrc_changes"), 1);
  EXPECT_EQ(rtp.at("expected"), 1502);
  EXPECT_EQ(rtp.at("lost"), 2);
  EXPECT_DOUBLE_EQ(rtp.at("jitter_ms").get<double>(), 1.5);
  EXPECT_EQ(body.at("legs")[1].at("stats").at("rtcp").at("packets"), 7);
  EXPECT_TRUE(body.at("legs")[1].at("stats").at("rtcp").at("drops_by_reason").empty());

  res = client_->Delete("/v1/sessions/" + id);  // already ended
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  ErrorOf(res);
}

// ------------------------------------------------------------------ errors

TEST_F(RestApiTest, InvalidBodiesAre400WithTheFieldAndNeverReachTheService) {
  const struct {
    std::string body;
    const char* field;  // nullptr: field is null
    const char* message;
  } kCases[] = {
      {R"({"call_id": "x", )", nullptr, "body: invalid JSON: "},
      {"", nullptr, "body: invalid JSON: "},
      {R"([1, 2])", nullptr, "body: must be a JSON object"},
      {R"({"call_id": "x", "call_id": "y", "legs": [{}, {}]})", nullptr,
       "body: duplicate key \"call_id\""},
      {R"({"call_id": "x", "legs": [{}, {}], "bogus": 1})", "bogus", "bogus: unknown field"},
      {R"({"call_id": "x", "legs": [{"bogus": 1}, {}]})", "legs[0].bogus",
       "legs[0].bogus: unknown field"},
      {R"({"call_id": "x", "legs": [{}, {"peer": {"address": "198.51.100.2", "port": 1,
          "scope": 2}}]})",
       "legs[1].peer.scope", "legs[1].peer.scope: unknown field"},
      {R"({"call_id": "x", "legs": [{"rtcp_mux": "yes"}, {}]})", "legs[0].rtcp_mux",
       "legs[0].rtcp_mux: must be a boolean"},
      {R"({"call_id": 7, "legs": [{}, {}]})", "call_id", "call_id: must be a string"},
      {R"({"legs": [{}, {}]})", "call_id", "call_id: required"},
      {R"({"call_id": "", "legs": [{}, {}]})", "call_id", "call_id: must be 1 to 255"},
      {R"({"call_id": "x", "legs": [{"peer": {"address": "198.51.100.300", "port": 1}}, {}]})",
       "legs[0].peer.address", "legs[0].peer.address: \"198.51.100.300\" is not an IPv4 or IPv6"},
      {R"({"call_id": "x", "legs": [{}, {"peer": {"address": "[2001:db8::1]", "port": 1}}]})",
       "legs[1].peer.address", "is not an IPv4 or IPv6 address"},
      {R"({"call_id": "x", "legs": [{}, {"peer": {"address": "0.0.0.0", "port": 1}}]})",
       "legs[1].peer.address", "is unspecified"},
      {R"({"call_id": "x", "legs": [{}, {"peer": {"address": "198.51.100.2", "port": 0}}]})",
       "legs[1].peer.port", "legs[1].peer.port: must be an integer between 1 and 65535"},
      {R"({"call_id": "x", "legs": [{}, {"peer": {"address": "198.51.100.2", "port": 65536}}]})",
       "legs[1].peer.port", "between 1 and 65535"},
      {R"({"call_id": "x", "legs": [{}, {"peer": {"address": "198.51.100.2", "port": 5.0}}]})",
       "legs[1].peer.port", "between 1 and 65535"},
      {R"({"call_id": "x", "legs": [{}, {"peer": {"address": "198.51.100.2"}}]})",
       "legs[1].peer.port", "legs[1].peer.port: required"},
      {R"({"call_id": "x", "legs": [{"dscp": 64}, {}]})", "legs[0].dscp",
       "legs[0].dscp: must be an integer between 0 and 63"},
      {R"({"call_id": "x", "legs": [{"dscp": -1}, {}]})", "legs[0].dscp", "between 0 and 63"},
      {R"({"call_id": "x", "legs": [{"family": "inet"}, {}]})", "legs[0].family",
       "must be \"ipv4\" or \"ipv6\""},
      {R"({"call_id": "x", "legs": [{"family": "ipv6",
          "peer": {"address": "198.51.100.2", "port": 1}}, {}]})",
       "legs[0].family", "ipv6 does not match the peer address 198.51.100.2"},
      {R"({"call_id": "x", "legs": [{}]})", "legs", "legs: must have exactly 2 legs, has 1"},
      {R"({"call_id": "x", "legs": [{}, {}, {}]})", "legs", "has 3"},
      {R"({"call_id": "x", "legs": {}})", "legs", "must be an array"},
      {R"({"call_id": "x"})", "legs", "legs: required"},
      {R"({"call_id": "x", "legs": [{}, 5]})", "legs[1]", "legs[1]: must be an object"},
      {R"({"call_id": "x", "media_timeout_s": 0, "legs": [{}, {}]})", "media_timeout_s",
       "between 1 and 86400"},
      {R"({"call_id": "x", "media_timeout_s": 86401, "legs": [{}, {}]})", "media_timeout_s",
       "between 1 and 86400"},
  };
  for (const auto& c : kCases) {
    auto res = Create(c.body);
    ASSERT_TRUE(res) << c.body;
    EXPECT_EQ(res->status, 400) << c.body;
    const Json error = ErrorOf(res);
    if (c.field == nullptr) {
      EXPECT_TRUE(error.at("field").is_null()) << c.body << " -> " << error;
    } else {
      EXPECT_EQ(error.at("field"), c.field) << c.body << " -> " << error;
    }
    EXPECT_NE(error.at("message").get<std::string>().find(c.message), std::string::npos)
        << c.body << " -> " << error;
  }
  EXPECT_EQ(fake_.calls(), 0);  // nothing half-applied
}

TEST_F(RestApiTest, ServiceErrorsMapToHttpStatusesWithTheField) {
  const struct {
    absl::Status status;
    int http;
    const char* field;  // nullptr: null
  } kCases[] = {
      {absl::InvalidArgumentError("legs[1].peer.port: reserved for SIP"), 400, "legs[1].peer.port"},
      {absl::InvalidArgumentError("two legs on the same port"), 400, nullptr},
      {absl::NotFoundError("legs[0].interface: no Karl port named ext9"), 404, "legs[0].interface"},
      {absl::AlreadyExistsError("call_id: a session for this call exists"), 409, "call_id"},
      {absl::FailedPreconditionError("node is draining"), 409, nullptr},
      {absl::ResourceExhaustedError("no free RTP ports on ext0"), 503, nullptr},
      {absl::UnavailableError("control plane: restoring sessions"), 503, nullptr},
      {absl::DeadlineExceededError("control plane did not answer in 2 s"), 504, nullptr},
      {absl::InternalError("flow table insert failed"), 500, nullptr},
      {absl::PermissionDeniedError("nope"), 500, nullptr},
  };
  for (const auto& c : kCases) {
    fake_.FailNext(c.status);
    auto res = Create(SampleCreateBody());
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, c.http) << c.status;
    const Json error = ErrorOf(res);
    EXPECT_EQ(error.at("message"), std::string(c.status.message()));
    if (c.field == nullptr) {
      EXPECT_TRUE(error.at("field").is_null()) << c.status << " -> " << error;
    } else {
      EXPECT_EQ(error.at("field"), c.field) << c.status;
    }
    EXPECT_TRUE(res->get_header_value("Location").empty());
  }
}

TEST_F(RestApiTest, AServiceThatThrowsIsA500NotACrash) {
  fake_.ThrowNext();
  auto res = client_->Get("/v1/sessions/s1");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  EXPECT_EQ(ErrorOf(res).at("message"), "internal error; see the karl log");
  res = client_->Get("/v1/sessions");  // the server still serves
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST_F(RestApiTest, UnknownPathsAre404AndWrongMethods405WithAllow) {
  for (const char* path : {"/v1/nope", "/v1", "/v1/sessions/a/b", "/v1/sessions/", "/", "/v2"}) {
    auto res = client_->Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 404) << path;
    EXPECT_EQ(ErrorOf(res).at("message"), std::string("no such endpoint: ") + path);
  }
  auto res = client_->Put("/v1/sessions", "{}", kJson);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
  EXPECT_EQ(res->get_header_value("Allow"), "GET, HEAD, POST");
  ErrorOf(res);
  res = client_->Delete("/v1/sessions");
  EXPECT_EQ(res->status, 405);
  res = client_->Post("/v1/sessions/s1", "{}", kJson);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
  EXPECT_EQ(res->get_header_value("Allow"), "GET, HEAD, PATCH, DELETE");
  EXPECT_EQ(ErrorOf(res).at("message"),
            "method POST not allowed on /v1/sessions/s1; allowed: GET, HEAD, PATCH, DELETE");
  EXPECT_EQ(fake_.calls(), 0);
}

TEST_F(RestApiTest, BodiesOverOneMebibyteAre413) {
  std::string body = R"({"call_id": ")" + std::string(RestApi::kMaxRequestBody, 'x') + R"("})";
  auto res = Create(body);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);
  ErrorOf(res);
  EXPECT_EQ(fake_.calls(), 0);
}

TEST_F(RestApiTest, RequestIdIsEchoedOrGenerated) {
  auto res = client_->Get("/v1/sessions", {{"X-Request-Id", "trace-42"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->get_header_value("X-Request-Id"), "trace-42");
  res = client_->Get("/v1/sessions", {{"X-Request-Id", "bad id with spaces"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->get_header_value("X-Request-Id").size(), 16u);
  res = client_->Get("/v1/sessions");
  EXPECT_EQ(res->get_header_value("X-Request-Id").size(), 16u);
}

TEST_F(RestApiTest, ConcurrentCreatesAllSucceed) {
  constexpr int kThreads = 8;
  constexpr int kEach = 10;
  std::atomic<int> created{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      httplib::Client client("127.0.0.1", api_->port());
      for (int i = 0; i < kEach; ++i) {
        auto res = client.Post("/v1/sessions",
                               R"({"call_id": "c)" + std::to_string(t) + "-" + std::to_string(i) +
                                   R"(", "legs": [{}, {}]})",
                               kJson);
        if (res && res->status == 201) ++created;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(created.load(), kThreads * kEach);
  auto res = client_->Get("/v1/sessions?limit=1");
  EXPECT_EQ(BodyOf(res).at("total"), kThreads * kEach);
}

// ------------------------------------------------------------------ auth

class RestApiAuthTest : public RestApiTest {
 protected:
  void SetUp() override {
    ApiConfig config = LoopbackConfig();
    config.tokens_file = dir_.Write(
        "tokens", "# API tokens for the SBC\n\n   tok-A_1.b~c+d/e  \n\t# old\nsecond==\n");
    StartApi(config);
  }
  TempDir dir_;
};

TEST_F(RestApiAuthTest, MissingTokenIs401WithWwwAuthenticate) {
  auto res = client_->Get("/v1/sessions");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  EXPECT_EQ(res->get_header_value("WWW-Authenticate"), "Bearer realm=\"karl\"");
  EXPECT_EQ(ErrorOf(res).at("message"), "missing bearer token; send Authorization: Bearer <token>");
  EXPECT_EQ(fake_.calls(), 0);
}

TEST_F(RestApiAuthTest, WrongTokensAre401) {
  for (const char* value : {"Bearer wrong", "Bearer tok-A_1.b~c+d/", "Bearer tok-A_1.b~c+d/ee",
                            "Bearer", "Basic dXNlcjpwYXNz", "tok-A_1.b~c+d/e"}) {
    auto res = client_->Get("/v1/sessions", {{"Authorization", value}});
    ASSERT_TRUE(res) << value;
    EXPECT_EQ(res->status, 401) << value;
    EXPECT_EQ(res->get_header_value("WWW-Authenticate"), "Bearer realm=\"karl\"") << value;
    ErrorOf(res);
  }
  // A refused create must not reach the service either.
  auto res =
      client_->Post("/v1/sessions", {{"Authorization", "Bearer wrong"}}, SampleCreateBody(), kJson);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  EXPECT_EQ(fake_.calls(), 0);
}

TEST_F(RestApiAuthTest, RightTokensAreAccepted) {
  for (const char* value : {"Bearer tok-A_1.b~c+d/e", "bearer   second==", "BEARER second=="}) {
    auto res = client_->Get("/v1/sessions", {{"Authorization", value}});
    ASSERT_TRUE(res) << value;
    EXPECT_EQ(res->status, 200) << value << ": " << res->body;
  }
  client_->set_bearer_token_auth("second==");
  auto res = Create(SampleCreateBody());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 201);
}

TEST_F(RestApiAuthTest, UnknownPathsAndWrongMethodsNeedATokenToo) {
  auto res = client_->Get("/v1/secret-admin");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  res = client_->Put("/v1/sessions", "{}", kJson);
  EXPECT_EQ(res->status, 401);
  EXPECT_TRUE(res->get_header_value("Allow").empty());
  client_->set_bearer_token_auth("second==");
  res = client_->Get("/v1/secret-admin");
  EXPECT_EQ(res->status, 404);
  res = client_->Put("/v1/sessions", "{}", kJson);
  EXPECT_EQ(res->status, 405);
}

// ------------------------------------------------------------------ start and stop

TEST(RestApiStartTest, PortInUseNamesAddressPortAndReason) {
  FakeSessionService fake;
  RestApi first(&fake, LoopbackConfig());
  ASSERT_TRUE(first.Start().ok());
  ApiConfig config = LoopbackConfig();
  config.port = first.port();
  RestApi second(&fake, config);
  const absl::Status status = second.Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_NE(status.message().find("127.0.0.1:" + std::to_string(first.port())), std::string::npos)
      << status;
  EXPECT_NE(status.message().find("Address already in use"), std::string::npos) << status;
  EXPECT_EQ(second.port(), 0);
  second.Stop();  // nothing to stop: fine
}

TEST(RestApiStartTest, TokensFileErrorsNameThePath) {
  FakeSessionService fake;
  TempDir dir;
  ApiConfig config = LoopbackConfig();

  config.tokens_file = dir.path() + "/missing-tokens";
  absl::Status status = RestApi(&fake, config).Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_NE(status.message().find(config.tokens_file), std::string::npos) << status;

  config.tokens_file = dir.Write("empty", "# nothing yet\n\n   \n");
  status = RestApi(&fake, config).Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(config.tokens_file), std::string::npos) << status;
  EXPECT_NE(status.message().find("no tokens"), std::string::npos) << status;

  config.tokens_file = dir.Write("bad", "good-token\n# c\nhas a space\n");
  status = RestApi(&fake, config).Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(config.tokens_file + ":3:"), std::string::npos) << status;
  EXPECT_EQ(status.message().find("has a space"), std::string::npos) << "secret echoed";
}

TEST(RestApiStartTest, StopIsIdempotentAndAStoppedApiCannotRestart) {
  FakeSessionService fake;
  RestApi api(&fake, LoopbackConfig());
  api.Stop();  // before Start
  ASSERT_TRUE(api.Start().ok());
  const uint16_t port = api.port();
  EXPECT_EQ(api.Start().code(), absl::StatusCode::kFailedPrecondition);
  httplib::Client client("127.0.0.1", port);
  auto res = client.Get("/v1/sessions");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  api.Stop();
  api.Stop();
  httplib::Client after("127.0.0.1", port);
  after.set_connection_timeout(1, 0);
  EXPECT_FALSE(after.Get("/v1/sessions"));
  EXPECT_EQ(api.Start().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(RestApiStartTest, DisabledApiDoesNotListen) {
  FakeSessionService fake;
  ApiConfig config = LoopbackConfig();
  config.enabled = false;
  RestApi api(&fake, config);
  EXPECT_TRUE(api.Start().ok());
  EXPECT_EQ(api.port(), 0);
}

// ------------------------------------------------------------------ TLS

// Writes a self-signed P-256 certificate for IP 127.0.0.1 and its key as PEM.
bool WriteSelfSignedCert(const std::string& cert_path, const std::string& key_path) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  bool ok = key != nullptr && cert != nullptr;
  if (ok) {
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("karl-test"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
    X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "IP:127.0.0.1");
    ok = san != nullptr && X509_add_ext(cert, san, -1) == 1;
    X509_EXTENSION_free(san);
    ok = ok && X509_sign(cert, key, EVP_sha256()) > 0;
  }
  if (ok) {
    std::FILE* c = std::fopen(cert_path.c_str(), "w");
    std::FILE* k = std::fopen(key_path.c_str(), "w");
    ok = c != nullptr && k != nullptr && PEM_write_X509(c, cert) == 1 &&
         PEM_write_PrivateKey(k, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
    if (c != nullptr) std::fclose(c);
    if (k != nullptr) std::fclose(k);
  }
  X509_free(cert);
  EVP_PKEY_free(key);
  return ok;
}

TEST(RestApiTlsTest, ServesHttpsWithBearerAuth) {
  FakeSessionService fake;
  TempDir dir;
  ApiConfig config = LoopbackConfig();
  config.tls_cert_file = dir.Path("cert.pem");
  config.tls_key_file = dir.Path("key.pem");
  ASSERT_TRUE(WriteSelfSignedCert(config.tls_cert_file, config.tls_key_file));
  config.tokens_file = dir.Write("tokens", "s3cret\n");
  RestApi api(&fake, config);
  const absl::Status started = api.Start();
  ASSERT_TRUE(started.ok()) << started;

  httplib::SSLClient client("127.0.0.1", api.port());
  client.set_ca_cert_path(config.tls_cert_file.c_str());
  client.enable_server_certificate_verification(true);
  client.set_bearer_token_auth("s3cret");
  auto res = client.Post("/v1/sessions", SampleCreateBody(), kJson);
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 201);
  EXPECT_EQ(Json::parse(res->body).at("call_id"), "a84b4c76e66710@pc33.example.com");

  httplib::Client plain("127.0.0.1", api.port());  // plain HTTP gets no answer
  plain.set_read_timeout(2, 0);
  auto plain_res = plain.Get("/v1/sessions");
  EXPECT_TRUE(!plain_res || plain_res->status != 200);
}

TEST(RestApiTlsTest, UnusableCertificateOrKeyNamesTheFile) {
  FakeSessionService fake;
  TempDir dir;
  ApiConfig config = LoopbackConfig();
  config.tls_cert_file = dir.Path("cert.pem");
  config.tls_key_file = dir.Path("key.pem");
  ASSERT_TRUE(WriteSelfSignedCert(config.tls_cert_file, config.tls_key_file));

  ApiConfig missing = config;
  missing.tls_key_file = dir.path() + "/absent.pem";
  absl::Status status = RestApi(&fake, missing).Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_NE(status.message().find(missing.tls_key_file), std::string::npos) << status;

  ApiConfig garbage = config;
  garbage.tls_cert_file = dir.Write("garbage.pem", "not a certificate\n");
  status = RestApi(&fake, garbage).Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(garbage.tls_cert_file), std::string::npos) << status;

  // A key that belongs to another certificate.
  ApiConfig mismatch = config;
  mismatch.tls_key_file = dir.Path("other-key.pem");
  ASSERT_TRUE(WriteSelfSignedCert(dir.Path("other-cert.pem"), mismatch.tls_key_file));
  status = RestApi(&fake, mismatch).Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("does not match"), std::string::npos) << status;
}

// ------------------------------------------------------------------ conversions

TEST(RestApiParseTest, MinimalSpecGetsDefaults) {
  const absl::StatusOr<SessionSpec> spec =
      ParseSessionSpec(R"({"call_id": "c1", "legs": [{}, {"dscp": null, "peer": null}]})");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->call_id, "c1");
  EXPECT_EQ(spec->from_tag, "");
  EXPECT_EQ(spec->media_timeout_s, 0u);  // config default
  ASSERT_EQ(spec->legs.size(), 2u);
  for (const LegSpec& leg : spec->legs) {
    EXPECT_FALSE(leg.peer.has_value());
    EXPECT_FALSE(leg.peer_rtcp_port.has_value());
    EXPECT_FALSE(leg.family.has_value());
    EXPECT_FALSE(leg.dscp.has_value());
    EXPECT_EQ(leg.interface, "");
    EXPECT_FALSE(leg.rtcp_mux || leg.strict_source || leg.asymmetric);
  }
}

TEST(RestApiParseTest, StringLengthsCountCharactersNotBytes) {
  std::string call_id;
  for (int i = 0; i < 255; ++i) call_id += "\xc3\xa9";  // é: 2 bytes, 1 character
  EXPECT_TRUE(ParseSessionSpec(R"({"call_id": ")" + call_id + R"(", "legs": [{}, {}]})").ok());
  const absl::StatusOr<SessionSpec> spec =
      ParseSessionSpec(R"({"call_id": ")" + call_id + R"(e", "legs": [{}, {}]})");
  EXPECT_EQ(spec.status().message(), "call_id: must be 1 to 255 characters long, is 256");
  EXPECT_EQ(ParseSessionSpec(R"({"call_id": "a\u0000b", "legs": [{}, {}]})").status().message(),
            "call_id: must not contain control characters");
}

TEST(RestApiParseTest, DeepNestingIsRefusedWithoutRecursion) {
  const std::string body =
      "{\"call_id\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
  const absl::StatusOr<SessionSpec> spec = ParseSessionSpec(body);
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(spec.status().message(), "body: nested deeper than 32 levels");
}

TEST(RestApiParseTest, UpdateParsesNullLegsAndRefusesTooMany) {
  absl::StatusOr<SessionUpdate> update = ParseSessionUpdate("{}");
  ASSERT_TRUE(update.ok());
  EXPECT_FALSE(update->to_tag || update->media_timeout_s);
  EXPECT_TRUE(update->legs.empty());

  update = ParseSessionUpdate(R"({"legs": [{"asymmetric": true}]})");
  ASSERT_TRUE(update.ok()) << update.status();
  ASSERT_EQ(update->legs.size(), 1u);
  EXPECT_EQ(update->legs[0]->asymmetric, true);
  EXPECT_FALSE(update->legs[0]->strict_source.has_value());

  EXPECT_EQ(ParseSessionUpdate(R"({"legs": [null, null, null]})").status().message(),
            "legs: has 3 entries; a session has 2 legs");
  EXPECT_EQ(ParseSessionUpdate(R"({"legs": [{"peer": null}]})").status().message(),
            "legs[0].peer: must not be null; omit it to keep the current value");
  EXPECT_EQ(ParseSessionUpdate(R"({"legs": [{"interface": "ext1"}]})").status().message(),
            "legs[0].interface: unknown field");
  EXPECT_EQ(ParseSessionUpdate(R"({"call_id": "x"})").status().message(), "call_id: unknown field");
  EXPECT_EQ(ParseSessionUpdate(R"({"legs": [7]})").status().message(),
            "legs[0]: must be an object or null");
}

TEST(RestApiParseTest, SrtpPerDirectionWithErrorsNamingTheField) {
  absl::StatusOr<SessionSpec> spec = ParseSessionSpec(
      R"({"call_id": "c", "legs": [{}, {"srtp": {"send": {"suite": "AEAD_AES_128_GCM"},
          "receive": {"suite": "AES_CM_128_HMAC_SHA1_80", "key": "inline:abc"},
          "replay_window": 256}}]})");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_FALSE(spec->legs[0].srtp.has_value());
  ASSERT_TRUE(spec->legs[1].srtp.has_value());
  const SrtpSpec& s = *spec->legs[1].srtp;
  ASSERT_TRUE(s.send && s.receive);
  EXPECT_EQ(s.send->suite, "AEAD_AES_128_GCM");
  EXPECT_EQ(s.send->key, "");  // Karl generates it
  EXPECT_EQ(s.receive->key, "inline:abc");
  EXPECT_EQ(s.replay_window, 256u);
  const auto error = [](const std::string& srtp) {
    return std::string(ParseSessionSpec(R"({"call_id": "c", "legs": [{}, {"srtp": )" + srtp + "}]}")
                           .status()
                           .message());
  };
  EXPECT_EQ(error(R"({"receive": {"suite": "AEAD_AES_128_GCM"}})"),
            "legs[1].srtp.receive.key: required: the key the peer encrypts with ('inline:...')");
  EXPECT_EQ(error(R"({"send": {"key": "inline:x"}})"),
            "legs[1].srtp.send.suite: required (e.g. \"AES_CM_128_HMAC_SHA1_80\")");
  EXPECT_EQ(error(R"({"send": {"suite": "X", "mki": 1}})"), "legs[1].srtp.send.mki: unknown field");
  EXPECT_EQ(error(R"({"replay_window": 64})"),
            "legs[1].srtp.replay_window: must be an integer between 128 and 32768");
  EXPECT_EQ(error("[]"), "legs[1].srtp: must be an object");
  absl::StatusOr<SessionUpdate> update = ParseSessionUpdate(R"({"legs": [null, {"srtp": {}}]})");
  ASSERT_TRUE(update.ok()) << update.status();
  ASSERT_TRUE(update->legs[1]->srtp.has_value());
  EXPECT_FALSE(update->legs[1]->srtp->send || update->legs[1]->srtp->receive);
  EXPECT_EQ(ParseSessionUpdate(R"({"legs": [{"srtp": null}]})").status().message(),
            "legs[0].srtp: must not be null; omit it to keep the current value");
}

TEST(RestApiParseTest, IceCredentialsAreCheckedAndCanBeTurnedOff) {
  absl::StatusOr<SessionSpec> spec = ParseSessionSpec(
      R"({"call_id": "c", "legs": [{}, {"ice": {"ufrag": "uF/8", "pwd": "abcdefghijklmnopqrstu+"}}]})");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_FALSE(spec->legs[0].ice.has_value());
  ASSERT_TRUE(spec->legs[1].ice.has_value());
  EXPECT_EQ(*spec->legs[1].ice, (IceSpec{"uF/8", "abcdefghijklmnopqrstu+"}));
  const auto error = [](const std::string& ice) {
    return std::string(ParseSessionSpec(R"({"call_id": "c", "legs": [{"ice": )" + ice + "}, {}]}")
                           .status()
                           .message());
  };
  EXPECT_EQ(error(R"({"ufrag": "abcd"})"), "legs[0].ice.pwd: required");
  EXPECT_EQ(error(R"({"ufrag": "abc", "pwd": "abcdefghijklmnopqrstuv"})"),
            "legs[0].ice.ufrag: must be 4..256 characters of A-Z a-z 0-9 + / (RFC 8839)");
  EXPECT_EQ(error(R"({"ufrag": "ab:d", "pwd": "abcdefghijklmnopqrstuv"})"),
            "legs[0].ice.ufrag: must be 4..256 characters of A-Z a-z 0-9 + / (RFC 8839)");
  EXPECT_EQ(error(R"({"ufrag": "abcd", "pwd": "short"})"),
            "legs[0].ice.pwd: must be 22..256 characters of A-Z a-z 0-9 + / (RFC 8839)");
  EXPECT_EQ(error(R"({"ufrag": "abcd", "pwd": "abcdefghijklmnopqrstuv", "x": 1})"),
            "legs[0].ice.x: unknown field");
  absl::StatusOr<SessionUpdate> off = ParseSessionUpdate(R"({"legs": [{"ice": false}]})");
  ASSERT_TRUE(off.ok()) << off.status();
  ASSERT_TRUE(off->legs[0]->ice.has_value());
  EXPECT_TRUE(off->legs[0]->ice->ufrag.empty());  // off
  EXPECT_EQ(ParseSessionUpdate(R"({"legs": [{"ice": null}]})").status().message(),
            "legs[0].ice: must not be null; omit it to keep the current value");
  EXPECT_EQ(ParseSessionUpdate(R"({"legs": [{"ice": true}]})").status().message(),
            "legs[0].ice: must be an object {\"ufrag\", \"pwd\"}");
}

TEST(RestApiParseTest, FilterDefaultsAndValues) {
  absl::StatusOr<SessionFilter> filter = ParseSessionFilter({});
  ASSERT_TRUE(filter.ok());
  EXPECT_EQ(filter->offset, 0u);
  EXPECT_EQ(filter->limit, 100u);
  EXPECT_EQ(filter->state, "");
  filter = ParseSessionFilter(
      {{"call_id", "x@y"}, {"state", "ended"}, {"offset", "20"}, {"limit", "1000"}});
  ASSERT_TRUE(filter.ok()) << filter.status();
  EXPECT_EQ(filter->call_id, "x@y");
  EXPECT_EQ(filter->state, "ended");
  EXPECT_EQ(filter->offset, 20u);
  EXPECT_EQ(filter->limit, 1000u);
  EXPECT_EQ(ParseSessionFilter({{"offset", "99999999999999999999"}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

SessionInfo SampleInfo() {
  SessionInfo info;
  info.id = "7f3a";
  info.call_id = "c1";
  info.from_tag = "f";
  info.to_tag = "t";
  info.state = "ended";
  info.end_reason = "timeout";
  info.created_unix_ms = 0;
  info.last_signal_unix_ms = 1700000000123;
  info.media_timeout_s = 60;
  LegInfo leg;
  leg.index = 0;
  leg.interface = "ext0";
  leg.local = {Ip("198.51.100.1"), 30000};
  leg.local_rtcp_port = 30001;
  leg.peer = Endpoint{Ip("2001:db8::2"), 5004};
  leg.peer_rtcp_port = 5005;
  leg.latched = true;
  leg.dscp = 46;
  leg.rtp.packets = 10;
  leg.rtp.drops = 1;
  leg.rtp.drops_by_reason[static_cast<size_t>(DropReason::kNoPeer)] = 1;
  leg.rtp.last_packet_age_s = 2.5;
  leg.rtp.lost = -1;
  leg.srtp = SrtpSpec{SrtpKeySpec{"AEAD_AES_128_GCM", "inline:a2V5"}, std::nullopt, 128};
  leg.ice = IceSpec{"Ab3/", "0123456789abcdefABCDEF+/"};
  info.legs.push_back(leg);
  return info;
}

TEST(RestApiJsonTest, SessionInfoToJsonIsTheDocumentedShape) {
  const Json expected_stats_rtp = {{"packets", 10},
                                   {"bytes", 0},
                                   {"drops", 1},
                                   {"drops_by_reason", {{"no_peer", 1}}},
                                   {"last_packet_age_s", 2.5},
                                   {"ssrc", 0},
                                   {"ssrc_changes", 0},
                                   {"expected", 0},
                                   {"lost", -1},
                                   {"jitter_ms", 0.0}};
  const Json expected_stats_rtcp = {{"packets", 0},
                                    {"bytes", 0},
                                    {"drops", 0},
                                    {"drops_by_reason", Json::object()},
                                    {"last_packet_age_s", nullptr},
                                    {"ssrc", 0},
                                    {"ssrc_changes", 0},
                                    {"expected", 0},
                                    {"lost", 0},
                                    {"jitter_ms", 0.0}};
  const Json expected = {
      {"id", "7f3a"},
      {"call_id", "c1"},
      {"from_tag", "f"},
      {"to_tag", "t"},
      {"state", "ended"},
      {"end_reason", "timeout"},
      {"created_at", "1970-01-01T00:00:00.000Z"},
      {"last_signal_at", "2023-11-14T22:13:20.123Z"},
      {"media_timeout_s", 60},
      {"legs",
       {{{"index", 0},
         {"interface", "ext0"},
         {"local", {{"address", "198.51.100.1"}, {"port", 30000}}},
         {"local_rtcp_port", 30001},
         {"peer", {{"address", "2001:db8::2"}, {"port", 5004}}},
         {"peer_rtcp_port", 5005},
         {"latched", true},
         {"rtcp_mux", false},
         {"strict_source", false},
         {"asymmetric", false},
         {"dscp", 46},
         {"srtp",
          {{"send", {{"suite", "AEAD_AES_128_GCM"}, {"key", "inline:a2V5"}}},
           {"receive", nullptr},
           {"replay_window", 128}}},
         {"ice", {{"ufrag", "Ab3/"}, {"pwd", "0123456789abcdefABCDEF+/"}}},
         {"stats", {{"rtp", expected_stats_rtp}, {"rtcp", expected_stats_rtcp}}}}}}};
  const nlohmann::ordered_json actual = SessionInfoToJson(SampleInfo());
  EXPECT_EQ(Json::parse(actual.dump()), expected) << actual.dump(2);
  // Documented order for humans reading curl output.
  EXPECT_EQ(actual.begin().key(), "id");
  EXPECT_EQ(actual.back().size(), 1u);  // "legs" last
}

TEST(RestApiJsonTest, ActiveSessionHasNullEndReason) {
  SessionInfo info = SampleInfo();
  info.state = "active";
  info.end_reason = "";
  EXPECT_TRUE(SessionInfoToJson(info).at("end_reason").is_null());
  info.legs[0].peer.reset();
  info.legs[0].dscp.reset();
  EXPECT_TRUE(SessionInfoToJson(info)["legs"][0].at("peer").is_null());
  EXPECT_TRUE(SessionInfoToJson(info)["legs"][0].at("dscp").is_null());
}

TEST(RestApiJsonTest, Rfc3339Milliseconds) {
  EXPECT_EQ(FormatRfc3339Ms(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatRfc3339Ms(1700000000123), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(FormatRfc3339Ms(951782400007), "2000-02-29T00:00:00.007Z");
  EXPECT_EQ(FormatRfc3339Ms(-1), "1969-12-31T23:59:59.999Z");
}

TEST(RestApiJsonTest, ErrorFieldOnlyForFieldPaths) {
  EXPECT_EQ(ErrorField(absl::InvalidArgumentError("legs[1].peer.port: in use")),
            "legs[1].peer.port");
  EXPECT_EQ(ErrorField(absl::InvalidArgumentError("limit: too big")), "limit");
  EXPECT_EQ(ErrorField(absl::InvalidArgumentError("body: invalid JSON: x")), "");
  EXPECT_EQ(ErrorField(absl::InvalidArgumentError("no free ports: ext0")), "");
  EXPECT_EQ(ErrorField(absl::InvalidArgumentError("plain message")), "");
  EXPECT_EQ(ErrorField(absl::NotFoundError("legs[0].interface: no port ext9")),
            "legs[0].interface");
  EXPECT_EQ(ErrorField(absl::NotFoundError("session: not found")), "");
  EXPECT_EQ(ErrorField(absl::ResourceExhaustedError("ports: none free")), "");

  const nlohmann::ordered_json error = ErrorJson(absl::DeadlineExceededError("slow"));
  EXPECT_EQ(error.dump(), R"({"error":{"code":504,"message":"slow","field":null}})");
}

TEST(RestApiJsonTest, BearerTokensFileSkipsCommentsAndBlankLines) {
  TempDir dir;
  const std::string path = dir.Write("tokens", "# c\n\n  a1  \r\n\t#x\nb2==\n");
  const absl::StatusOr<std::vector<std::string>> tokens = LoadBearerTokens(path);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(*tokens, (std::vector<std::string>{"a1", "b2=="}));
  EXPECT_FALSE(LoadBearerTokens(dir.Write("bad", "=abc\n")).ok());
}

}  // namespace
}  // namespace karl
