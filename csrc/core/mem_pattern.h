// Memory patterns (SessionOptions.enable_mem_pattern, as in onnxruntime): the first run of a plan
// with a given input signature (element types and shapes of the fed inputs, and the outputs asked
// for) records every fresh host allocation of a native step -- where in the step order it was made,
// its size, and the step after which it was freed. Allocations freed during the run are then laid
// out in one arena by their lifetimes (best fit, largest first, 64-byte aligned), so values that are
// never alive together share memory. Later runs with that signature allocate the arena once and hand
// out slices of it.
//
// Safety does not rest on the recording: a slice is handed out only when the size asked for is the
// recorded one and every slot sharing its memory is dead in this run (its Storage gone); otherwise
// the value gets an ordinary allocation. Data-dependent shapes, or a host step that keeps a buffer
// longer than in the recorded run, cost memory, never correctness; a signature whose runs use fewer
// than half of the slots drops its pattern and runs without an arena. Slices keep the arena alive.
#pragma once
#include <cstddef>
#include <memory>
#include <unordered_map>
#include <vector>

#include "tensor.h"

namespace onnxfast {

struct MemPattern {
  struct Slot {
    size_t offset = 0, nbytes = 0;
    std::vector<int> overlaps;  // slots sharing some of its bytes (never alive at the same time)
  };
  size_t arena_bytes = 0;
  std::unordered_map<int64_t, int> slot_of;  // alloc_key(position in the step order, output index) -> slot
  std::vector<Slot> slots;
};

inline int64_t alloc_key(int position, int output) { return (static_cast<int64_t>(position) << 16) | output; }

// What a recording run saw.
struct MemRecord {
  struct Alloc {
    int pos = 0, output = 0;
    size_t nbytes = 0;
    int death = -1;  // position of the step after which it was freed; -1: alive at the end of the run
  };
  std::vector<Alloc> allocs;
  std::unordered_map<const Storage*, int> live;  // storage -> its entry in allocs
  void allocated(const Storage* s, int pos, int output, size_t nbytes);
  void freed(const Storage* s, int pos);
};

// The layout of the allocations a run recorded that died during it (null when there is nothing to share).
std::shared_ptr<const MemPattern> plan_memory(const MemRecord& rec);

// One run's arena.
class MemArena {
 public:
  MemArena(std::shared_ptr<const MemPattern> pattern, bool cacheable);
  // A slice for output `output` of the step at `pos`, or null (no slot, another size, memory still in use).
  std::shared_ptr<Storage> take(int pos, int output, size_t nbytes);
  size_t handed_out() const { return handed_out_; }
  // Fewer than half of the slots were handed out this run (sizes that depend on the data): the
  // arena costs more than it saves, and the signature should run without it.
  bool mostly_unused() const { return 2 * slots_given_ < pattern_->slots.size(); }
  const MemPattern* pattern() const { return pattern_.get(); }

 private:
  std::shared_ptr<const MemPattern> pattern_;
  std::shared_ptr<Storage> arena_;
  std::vector<std::weak_ptr<Storage>> given_;  // per slot, this run
  size_t handed_out_ = 0;
  size_t slots_given_ = 0;
};

}  // namespace onnxfast
