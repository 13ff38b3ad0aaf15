// A plain-text table with aligned columns, for vtpmctl's human output.
#pragma once

#include <string>
#include <vector>

namespace vtpm::ctl {

enum class Align { kLeft, kRight };

struct Column {
  std::string title;
  Align align = Align::kLeft;
};

class Table {
 public:
  explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}
  // Missing cells render empty; extra cells are ignored.
  void add_row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  // Header plus one line per row, columns two spaces apart, no trailing blanks.
  std::string render() const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace vtpm::ctl
