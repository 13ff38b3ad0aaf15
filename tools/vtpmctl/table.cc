#include "tools/vtpmctl/table.h"

#include <algorithm>

namespace vtpm::ctl {
namespace {

const std::string& cell(const std::vector<std::string>& row, std::size_t i) {
  static const std::string kEmpty;
  return i < row.size() ? row[i] : kEmpty;
}

void append_line(std::string& out, const std::vector<Column>& columns, const std::vector<std::size_t>& widths,
                 const std::vector<std::string>& row) {
  std::string line;
  for (std::size_t i = 0; i < columns.size(); ++i) {
    const std::string& text = cell(row, i);
    const std::string pad(widths[i] - std::min(widths[i], text.size()), ' ');
    if (i > 0) line += "  ";
    line += columns[i].align == Align::kRight ? pad + text : text + pad;
  }
  line.erase(line.find_last_not_of(' ') + 1);
  out += line;
  out += '\n';
}

}  // namespace

std::string Table::render() const {
  std::vector<std::size_t> widths;
  std::vector<std::string> header;
  for (const Column& column : columns_) {
    widths.push_back(column.title.size());
    header.push_back(column.title);
  }
  for (const auto& row : rows_) {
    for (std::size_t i = 0; i < columns_.size(); ++i) widths[i] = std::max(widths[i], cell(row, i).size());
  }
  std::string out;
  append_line(out, columns_, widths, header);
  for (const auto& row : rows_) append_line(out, columns_, widths, row);
  return out;
}

}  // namespace vtpm::ctl
