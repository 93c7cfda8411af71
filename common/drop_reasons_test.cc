#include "common/drop_reasons.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace karl {
namespace {

// Prometheus label values and docs anchors: lower-case words joined by single underscores.
bool IsSnakeCase(std::string_view s) {
  if (s.empty() || s.front() < 'a' || s.front() > 'z' || s.back() == '_') return false;
  char previous = 0;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok || (c == '_' && previous == '_')) return false;
    previous = c;
  }
  return true;
}

TEST(DropReasonsTest, SnakeCaseCheckItself) {
  EXPECT_TRUE(IsSnakeCase("no_session"));
  EXPECT_TRUE(IsSnakeCase("ipv4_fragment"));
  EXPECT_FALSE(IsSnakeCase("NoSession"));
  EXPECT_FALSE(IsSnakeCase("no-session"));
  EXPECT_FALSE(IsSnakeCase("no__session"));
  EXPECT_FALSE(IsSnakeCase("_no"));
  EXPECT_FALSE(IsSnakeCase("no_"));
  EXPECT_FALSE(IsSnakeCase("4no"));
  EXPECT_FALSE(IsSnakeCase(""));
}

TEST(DropReasonsTest, CountMatchesTheList) {
  size_t listed = 0;
#define KARL_X_COUNT(name, label, help) ++listed;
  KARL_DROP_REASONS(KARL_X_COUNT)
#undef KARL_X_COUNT
  EXPECT_EQ(listed, kDropReasonCount);
  EXPECT_GT(kDropReasonCount, 0u);
}

TEST(DropReasonsTest, LabelsAreUniqueNonEmptySnakeCase) {
  std::set<std::string_view> seen;
  for (size_t i = 0; i < kDropReasonCount; ++i) {
    const std::string_view label = DropReasonLabel(static_cast<DropReason>(i));
    EXPECT_FALSE(label.empty()) << "reason " << i;
    EXPECT_TRUE(IsSnakeCase(label)) << "reason " << i << ": '" << label << "'";
    EXPECT_TRUE(seen.insert(label).second) << "duplicate label '" << label << "'";
  }
}

TEST(DropReasonsTest, EveryReasonIsExplained) {
  for (size_t i = 0; i < kDropReasonCount; ++i) {
    const auto reason = static_cast<DropReason>(i);
    EXPECT_FALSE(DropReasonHelp(reason).empty()) << DropReasonLabel(reason);
    EXPECT_NE(DropReasonHelp(reason), DropReasonLabel(reason));
  }
}

TEST(DropReasonsTest, LabelsMatchTheirEnumerators) {
  // Spot checks that the X-macro columns line up (label n belongs to enumerator n).
  EXPECT_EQ(DropReasonLabel(DropReason::kRuntFrame), "runt_frame");
  EXPECT_EQ(DropReasonLabel(DropReason::kNoSession), "no_session");
  EXPECT_EQ(DropReasonLabel(DropReason::kTxFull), "tx_full");
  static_assert(DropReasonLabel(DropReason::kNoSession) == "no_session",
                "labels are usable at compile time");
}

}  // namespace
}  // namespace karl
