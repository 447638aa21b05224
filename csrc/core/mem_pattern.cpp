// Memory patterns: recording, layout, and the per-run arena (mem_pattern.h).
#include "mem_pattern.h"

#include <algorithm>

namespace onnxfast {

namespace {
constexpr size_t kAlign = 64;
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
}  // namespace

void MemRecord::allocated(const Storage* s, int pos, int output, size_t nbytes) {
  live[s] = static_cast<int>(allocs.size());  // an address freed unseen and reused: the old entry stays unplaced
  allocs.push_back({pos, output, nbytes, -1});
}

void MemRecord::freed(const Storage* s, int pos) {
  auto it = live.find(s);
  if (it == live.end()) return;
  allocs[it->second].death = pos;
  live.erase(it);
}

std::shared_ptr<const MemPattern> plan_memory(const MemRecord& rec) {
  std::vector<int> order;
  for (size_t i = 0; i < rec.allocs.size(); ++i)
    if (rec.allocs[i].death >= 0 && rec.allocs[i].nbytes > 0) order.push_back(static_cast<int>(i));
  if (order.size() < 2) return nullptr;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return rec.allocs[a].nbytes > rec.allocs[b].nbytes;
  });
  auto p = std::make_shared<MemPattern>();
  std::vector<int> placed;  // alloc indices, with their slot = position in placed
  std::vector<size_t> offset(rec.allocs.size(), 0);
  auto live_together = [&](int a, int b) {
    const auto &x = rec.allocs[a], &y = rec.allocs[b];
    return !(x.death < y.pos || y.death < x.pos);
  };
  for (int a : order) {
    const size_t need = align_up(rec.allocs[a].nbytes);
    std::vector<std::pair<size_t, size_t>> busy;  // [begin, end) of allocations alive with this one
    for (int b : placed)
      if (live_together(a, b)) busy.push_back({offset[b], offset[b] + align_up(rec.allocs[b].nbytes)});
    std::sort(busy.begin(), busy.end());
    size_t best = SIZE_MAX, best_gap = SIZE_MAX, at = 0;
    for (const auto& [lo, hi] : busy) {
      if (lo > at && lo - at >= need && lo - at < best_gap) {
        best = at;
        best_gap = lo - at;
      }
      at = std::max(at, hi);
    }
    offset[a] = best != SIZE_MAX ? best : at;  // the tightest gap, else the end
    placed.push_back(a);
    p->arena_bytes = std::max(p->arena_bytes, offset[a] + need);
  }
  p->slots.resize(placed.size());
  for (size_t s = 0; s < placed.size(); ++s) {
    const auto& al = rec.allocs[placed[s]];
    p->slots[s].offset = offset[placed[s]];
    p->slots[s].nbytes = al.nbytes;
    p->slot_of[alloc_key(al.pos, al.output)] = static_cast<int>(s);
  }
  for (size_t s = 0; s < placed.size(); ++s)
    for (size_t t = 0; t < placed.size(); ++t) {
      if (s == t) continue;
      const auto &x = p->slots[s], &y = p->slots[t];
      if (x.offset < y.offset + align_up(y.nbytes) && y.offset < x.offset + align_up(x.nbytes))
        p->slots[s].overlaps.push_back(static_cast<int>(t));
    }
  return p;
}

MemArena::MemArena(std::shared_ptr<const MemPattern> pattern, bool cacheable)
    : pattern_(std::move(pattern)), given_(pattern_->slots.size()) {
  arena_ = Storage::allocate(pattern_->arena_bytes, "memory pattern arena");
  arena_->cacheable = cacheable;
}

std::shared_ptr<Storage> MemArena::take(int pos, int output, size_t nbytes) {
  auto it = pattern_->slot_of.find(alloc_key(pos, output));
  if (it == pattern_->slot_of.end()) return nullptr;
  const int slot = it->second;
  const MemPattern::Slot& s = pattern_->slots[slot];
  if (s.nbytes != nbytes || !given_[slot].expired()) return nullptr;
  for (int o : s.overlaps)
    if (!given_[o].expired()) return nullptr;  // its memory is still in use in this run
  auto st = std::make_shared<Storage>();
  st->data = static_cast<char*>(arena_->data) + s.offset;
  st->nbytes = nbytes;
  st->parent = arena_;
  given_[slot] = st;
  handed_out_ += nbytes;
  ++slots_given_;
  return st;
}

}  // namespace onnxfast
