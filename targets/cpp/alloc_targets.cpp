// The alloctrace workload targets in C++20 (libstdc++ only).
//
//   alloc-cpp <scenario> [--size N] [--seed S] [--threads T] [--variant new|pmr-pool|pmr-monotonic]
//   alloc-cpp --list [--variant V]
//
// targets/README.md specifies the scenarios; the Rust, Go and Python targets implement the same
// ones with the same PRNG draws. Variants:
//   new            plain new/delete through std::allocator (the default);
//   pmr-pool       std::pmr containers on a std::pmr::unsynchronized_pool_resource per worker
//                  (synchronized_pool_resource per pair in producer-consumer);
//   pmr-monotonic  std::pmr containers on a std::pmr::monotonic_buffer_resource per worker with
//                  an 8 MiB initial buffer, released at the end of each round (each tree in
//                  binary-trees).
// Both pmr variants take their memory from a counting resource over new_delete_resource(), so
// the JSON line's extra.heap_allocs / heap_bytes are the operator new calls the tracer should see.
//
// On success stdout gets exactly one JSON line: the program's own counters.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

using u64 = std::uint64_t;

// --- the common PRNG and size distributions -------------------------------------------------

// splitmix64: the same seed gives the same sequence in all four languages.
class Rng {
public:
    explicit Rng(u64 seed) : state_(seed) {}

    u64 next() {
        ++draws_;
        u64 z = (state_ += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }

    u64 below(u64 n) { return next() % n; }
    u64 draws() const { return draws_; }

private:
    u64 state_;
    u64 draws_ = 0;
};

std::vector<u64> worker_seeds(u64 seed, unsigned threads) {
    Rng root(seed);
    std::vector<u64> seeds(threads);
    for (auto& s : seeds) s = root.next();
    return seeds;
}

u64 share(u64 total, unsigned parts, unsigned index) {
    return total / parts + (index < total % parts ? 1 : 0);
}

std::uint8_t fill_byte(u64 index) { return static_cast<std::uint8_t>(1 + index % 255); }

u64 mixed_size(Rng& rng) {
    const u64 cls = rng.below(1000);
    if (cls < 600) return 16 + rng.below(112);
    if (cls < 900) return 128 + rng.below(896);
    if (cls < 990) return 1024 + rng.below(7168);
    if (cls < 999) return 8192 + rng.below(57344);
    return 65536 + rng.below(196608);
}

// --- counters -------------------------------------------------------------------------------

struct Tally {
    u64 work = 0, objects = 0, bytes = 0, payload = 0, checksum = 0, draws = 0;
    std::optional<std::pair<u64, u64>> upstream;

    // One data object of len bytes: requested bytes = payload bytes in C++.
    void object(u64 len) {
        ++objects;
        bytes += len;
        payload += len;
    }

    template <class Bytes>
    void touch(const Bytes& b) {
        if (!b.empty()) checksum += u64{b.front()} + u64{b.back()};
    }

    Tally& operator+=(const Tally& t) {
        work += t.work;
        objects += t.objects;
        bytes += t.bytes;
        payload += t.payload;
        checksum += t.checksum;
        draws += t.draws;
        if (t.upstream) {
            auto [a, b] = upstream.value_or(std::pair<u64, u64>{0, 0});
            upstream = std::pair{a + t.upstream->first, b + t.upstream->second};
        }
        return *this;
    }
};

struct Report {
    u64 work_units = 0, objects = 0, bytes_requested = 0;
    std::vector<std::pair<std::string, u64>> extra;

    Report& add(std::string key, u64 value) {
        extra.emplace_back(std::move(key), value);
        return *this;
    }

    static Report from(const Tally& t, bool with_payload = true) {
        Report r{t.work, t.objects, t.bytes, {}};
        if (with_payload) r.add("payload_bytes", t.payload).add("checksum", t.checksum).add("rng_draws", t.draws);
        return r;
    }

    Report& upstream(const Tally& t) {
        if (t.upstream) add("heap_allocs", t.upstream->first).add("heap_bytes", t.upstream->second);
        return *this;
    }
};

// --- memory policies ------------------------------------------------------------------------

struct Node {
    Node* left;
    Node* right;
};

enum class Variant { New, PmrPool, PmrMonotonic };

// Counts what a pmr resource takes from operator new (via new_delete_resource()).
class CountingResource final : public std::pmr::memory_resource {
public:
    u64 allocs() const { return allocs_.load(std::memory_order_relaxed); }
    u64 bytes() const { return bytes_.load(std::memory_order_relaxed); }

private:
    void* do_allocate(std::size_t bytes, std::size_t align) override {
        allocs_.fetch_add(1, std::memory_order_relaxed);
        bytes_.fetch_add(bytes, std::memory_order_relaxed);
        return std::pmr::new_delete_resource()->allocate(bytes, align);
    }
    void do_deallocate(void* p, std::size_t bytes, std::size_t align) override {
        std::pmr::new_delete_resource()->deallocate(p, bytes, align);
    }
    bool do_is_equal(const memory_resource& other) const noexcept override { return this == &other; }

    std::atomic<u64> allocs_{0}, bytes_{0};
};

// new/delete: every object is its own operator new call.
class NewHeap {
public:
    using Bytes = std::vector<std::uint8_t>;
    template <class T>
    using Vector = std::vector<T>;
    template <class T>
    using List = std::list<T>;
    template <class K, class V>
    using Map = std::unordered_map<K, V>;

    explicit NewHeap(Variant = Variant::New, bool = false) {}

    Bytes bytes(u64 len, std::uint8_t fill) { return Bytes(len, fill); }
    template <class T>
    Vector<T> vector() { return Vector<T>(); }
    template <class T>
    List<T> list() { return List<T>(); }
    template <class K, class V>
    Map<K, V> map() { return Map<K, V>(); }

    Node* node(Node* left, Node* right) { return new Node{left, right}; }
    void free_tree(Node* n) {
        if (n == nullptr) return;
        free_tree(n->left);
        free_tree(n->right);
        delete n;
    }
    void end_round() {}
    std::optional<std::pair<u64, u64>> upstream() const { return std::nullopt; }
};

// std::pmr containers on a pool or monotonic resource over a counting upstream.
class PmrHeap {
public:
    using Bytes = std::pmr::vector<std::uint8_t>;
    template <class T>
    using Vector = std::pmr::vector<T>;
    template <class T>
    using List = std::pmr::list<T>;
    template <class K, class V>
    using Map = std::pmr::unordered_map<K, V>;

    // The monotonic resource starts with an initial buffer from upstream, which release() rewinds
    // to: each round reuses it (like bumpalo's reset(), which keeps its largest chunk) instead of
    // returning every chunk upstream and page-faulting fresh ones in the next round.
    static constexpr std::size_t kInitialBuffer = std::size_t{8} << 20;

    explicit PmrHeap(Variant v, bool synchronized = false) : monotonic_(v == Variant::PmrMonotonic) {
        if (monotonic_) {
            initial_ = upstream_.allocate(kInitialBuffer, alignof(std::max_align_t));
            resource_ = std::make_unique<std::pmr::monotonic_buffer_resource>(initial_, kInitialBuffer, &upstream_);
        } else if (synchronized)
            resource_ = std::make_unique<std::pmr::synchronized_pool_resource>(&upstream_);
        else
            resource_ = std::make_unique<std::pmr::unsynchronized_pool_resource>(&upstream_);
    }

    PmrHeap(const PmrHeap&) = delete;
    PmrHeap& operator=(const PmrHeap&) = delete;

    ~PmrHeap() {
        resource_.reset();
        if (initial_ != nullptr) upstream_.deallocate(initial_, kInitialBuffer, alignof(std::max_align_t));
    }

    Bytes bytes(u64 len, std::uint8_t fill) { return Bytes(len, fill, resource_.get()); }
    template <class T>
    Vector<T> vector() { return Vector<T>(resource_.get()); }
    template <class T>
    List<T> list() { return List<T>(resource_.get()); }
    template <class K, class V>
    Map<K, V> map() { return Map<K, V>(resource_.get()); }

    Node* node(Node* left, Node* right) {
        return std::pmr::polymorphic_allocator<Node>(resource_.get()).new_object<Node>(left, right);
    }
    // A monotonic resource frees nothing individually: the tree goes with end_round().
    void free_tree(Node* n) {
        if (monotonic_ || n == nullptr) return;
        free_tree(n->left);
        free_tree(n->right);
        std::pmr::polymorphic_allocator<Node>(resource_.get()).delete_object(n);
    }
    void end_round() {
        if (monotonic_) static_cast<std::pmr::monotonic_buffer_resource*>(resource_.get())->release();
    }
    std::optional<std::pair<u64, u64>> upstream() const { return std::pair{upstream_.allocs(), upstream_.bytes()}; }

private:
    CountingResource upstream_;  // declared first: outlives resource_
    bool monotonic_;
    void* initial_ = nullptr;
    std::unique_ptr<std::pmr::memory_resource> resource_;
};

struct Config {
    std::string scenario;
    u64 size = 0, seed = 1;
    unsigned threads = 1;
    Variant variant = Variant::New;
};

// Runs worker(index, count, seed) -> R for each worker, inline when there is one.
template <class F>
auto parallel(const Config& c, F worker) {
    using R = decltype(worker(0u, u64{}, u64{}));
    const auto seeds = worker_seeds(c.seed, c.threads);
    std::vector<R> results(c.threads);
    if (c.threads == 1) {
        results[0] = worker(0u, c.size, seeds[0]);
        return results;
    }
    std::vector<std::thread> pool;
    for (unsigned i = 0; i < c.threads; ++i)
        pool.emplace_back([&, i] { results[i] = worker(i, share(c.size, c.threads, i), seeds[i]); });
    for (auto& t : pool) t.join();
    return results;
}

// Calls f(heap) with the heap type of the variant.
template <class F>
auto with_heap(Variant v, F f) {
    if (v == Variant::New) {
        NewHeap heap;
        return f(heap);
    }
    PmrHeap heap(v);
    return f(heap);
}

// --- binary-trees ---------------------------------------------------------------------------

constexpr unsigned kMinDepth = 4;

// A complete tree: 2^(depth+1) - 1 node allocations, children before their parent.
template <class H>
Node* bottom_up(H& heap, unsigned depth) {
    if (depth == 0) return heap.node(nullptr, nullptr);
    Node* left = bottom_up(heap, depth - 1);
    Node* right = bottom_up(heap, depth - 1);
    return heap.node(left, right);
}

u64 check(const Node* n) { return n->left == nullptr ? 1 : 1 + check(n->left) + check(n->right); }

template <class H>
u64 make_check_free(H& heap, unsigned depth) {
    Node* tree = bottom_up(heap, depth);
    const u64 nodes = check(tree);
    heap.free_tree(tree);
    heap.end_round();
    return nodes;
}

Report binary_trees(const Config& c) {
    const unsigned max_depth = std::max<unsigned>(kMinDepth + 2, static_cast<unsigned>(c.size));
    struct Result {
        u64 trees = 0, nodes = 0;
        std::optional<std::pair<u64, u64>> upstream;
    };
    auto worker = [&](unsigned index) {
        return with_heap(c.variant, [&](auto& heap) {
            Result r;
            for (unsigned depth = kMinDepth; depth <= max_depth; depth += 2) {
                const u64 iterations = u64{1} << (max_depth - depth + kMinDepth);
                for (u64 i = 0; i < share(iterations, c.threads, index); ++i) {
                    r.nodes += make_check_free(heap, depth);
                    ++r.trees;
                }
            }
            r.upstream = heap.upstream();
            return r;
        });
    };
    Tally total;
    with_heap(c.variant, [&](auto& main_heap) {
        total.objects += make_check_free(main_heap, max_depth + 1);  // stretch tree
        using H = std::remove_reference_t<decltype(main_heap)>;
        H long_heap(c.variant);
        Node* long_lived = bottom_up(long_heap, max_depth);
        std::vector<Result> results(c.threads);
        if (c.threads == 1) {
            results[0] = worker(0);
        } else {
            std::vector<std::thread> pool;
            for (unsigned i = 0; i < c.threads; ++i) pool.emplace_back([&, i] { results[i] = worker(i); });
            for (auto& t : pool) t.join();
        }
        for (const auto& r : results) {
            total.work += r.trees;
            total.objects += r.nodes;
            total += Tally{.upstream = r.upstream};
        }
        const u64 long_check = check(long_lived);
        long_heap.free_tree(long_lived);
        long_heap.end_round();
        total.objects += long_check;
        total.work += 2;  // stretch and long-lived
        total.checksum = long_check;
        total += Tally{.upstream = main_heap.upstream()};
        total += Tally{.upstream = long_heap.upstream()};
        return 0;
    });
    Report r{total.work, total.objects, total.objects * sizeof(Node), {}};
    r.add("max_depth", max_depth).add("trees", total.work).add("node_size", sizeof(Node));
    r.add("long_lived_check", total.checksum);
    return r.upstream(total);
}

// --- churn ----------------------------------------------------------------------------------

constexpr u64 kChurnRound = 4096;
constexpr u64 kChurnSlots = 256;

template <class H>
Tally churn_worker(H& heap, u64 count, u64 seed) {
    Rng rng(seed);
    Tally t;
    while (t.objects < count) {
        const u64 round = std::min(kChurnRound, count - t.objects);
        {
            std::vector<std::optional<typename H::Bytes>> slots(kChurnSlots);
            for (u64 i = 0; i < round; ++i) {
                const u64 len = mixed_size(rng);
                const u64 slot = rng.below(kChurnSlots);
                auto buf = heap.bytes(len, fill_byte(t.objects));
                t.object(len);
                t.touch(buf);
                slots[slot] = std::move(buf);  // frees the slot's previous object
            }
        }
        heap.end_round();
    }
    t.work = count;
    t.draws = rng.draws();
    t.upstream = heap.upstream();
    return t;
}

// Each thread runs `worker(heap, count, seed)` on a heap of the variant; their tallies summed.
template <class W>
Tally sum_workers(const Config& c, W worker) {
    Tally total;
    for (const auto& t : parallel(c, [&](unsigned, u64 count, u64 seed) {
             return with_heap(c.variant, [&](auto& heap) { return worker(heap, count, seed); });
         }))
        total += t;
    return total;
}

Report churn(const Config& c) {
    const Tally total =
        sum_workers(c, [](auto& heap, u64 count, u64 seed) { return churn_worker(heap, count, seed); });
    return Report::from(total).upstream(total);
}

// --- fragmentation --------------------------------------------------------------------------

constexpr u64 kFragRound = 16384;

template <class H>
Tally fragmentation_worker(H& heap, u64 count, u64 seed) {
    Rng rng(seed);
    Tally t;
    for (u64 done = 0; done < count;) {
        const u64 round = std::min(kFragRound, count - done);
        {
            std::vector<std::optional<typename H::Bytes>> small;
            small.reserve(round);
            for (u64 i = 0; i < round; ++i) {
                const u64 len = 16 + rng.below(113);
                small.emplace_back(heap.bytes(len, fill_byte(t.objects)));
                t.object(len);
            }
            for (u64 i = 1; i < round; i += 2) small[i].reset();  // frees every other small object
            std::vector<typename H::Bytes> large;
            large.reserve(round / 2);
            for (u64 i = 0; i < round / 2; ++i) {
                const u64 len = 256 + rng.below(769);
                large.push_back(heap.bytes(len, fill_byte(t.objects)));
                t.object(len);
            }
            for (const auto& s : small)
                if (s) t.touch(*s);
            for (const auto& l : large) t.touch(l);
        }
        heap.end_round();
        done += round;
    }
    t.work = count;
    t.draws = rng.draws();
    t.upstream = heap.upstream();
    return t;
}

Report fragmentation(const Config& c) {
    const Tally total =
        sum_workers(c, [](auto& heap, u64 count, u64 seed) { return fragmentation_worker(heap, count, seed); });
    Report r = Report::from(total);
    r.add("small_objects", total.work).add("large_objects", total.objects - total.work);
    return r.upstream(total);
}

// --- growth ---------------------------------------------------------------------------------

constexpr u64 kGrowthGroup = 8;

u64 target_len(Rng& rng) { return rng.below(100) < 90 ? 1 + rng.below(1000) : 1 + rng.below(100000); }

// A growth step is a change of capacity(): one new allocation of the element storage.
template <class H>
Tally growth_worker(H& heap, u64 count, u64 seed) {
    Rng rng(seed);
    Tally t;
    std::vector<typename H::template Vector<u64>> vecs;
    for (u64 i = 0; i < kGrowthGroup; ++i) vecs.push_back(heap.template vector<u64>());
    for (u64 done = 0; done < count;) {
        const u64 k = std::min(kGrowthGroup, count - done);
        std::array<u64, kGrowthGroup> lens{};
        for (u64 i = 0; i < k; ++i) lens[i] = target_len(rng);
        const u64 longest = *std::max_element(lens.begin(), lens.begin() + k);
        for (u64 j = 0; j < longest; ++j) {
            for (u64 i = 0; i < k; ++i) {
                if (j >= lens[i]) continue;
                auto& v = vecs[i];
                const auto before = v.capacity();
                v.push_back(j & 0xFF);
                if (v.capacity() != before) {
                    ++t.objects;
                    t.bytes += v.capacity() * sizeof(u64);
                }
            }
        }
        for (u64 i = 0; i < k; ++i) {
            t.checksum += std::accumulate(vecs[i].begin(), vecs[i].end(), u64{0});
            t.work += vecs[i].size();
            vecs[i] = heap.template vector<u64>();  // frees the storage; the next group starts from nothing
        }
        heap.end_round();
        done += k;
    }
    t.payload = t.work * sizeof(u64);
    t.draws = rng.draws();
    t.upstream = heap.upstream();
    return t;
}

Report growth(const Config& c) {
    const Tally total =
        sum_workers(c, [](auto& heap, u64 count, u64 seed) { return growth_worker(heap, count, seed); });
    Report r{total.work, total.objects, total.bytes, {}};
    r.add("vectors", c.size).add("elements", total.work).add("payload_bytes", total.payload);
    r.add("checksum", total.checksum).add("rng_draws", total.draws);
    return r.upstream(total);
}

// --- producer-consumer ----------------------------------------------------------------------

constexpr std::size_t kQueue = 256;

// A bounded FIFO: a ring of optional slots allocated once, a mutex and two condition variables.
template <class T>
class BoundedQueue {
public:
    explicit BoundedQueue(std::size_t capacity) : ring_(capacity) {}

    void push(T value) {
        std::unique_lock lock(mutex_);
        not_full_.wait(lock, [&] { return count_ < ring_.size(); });
        ring_[(head_ + count_) % ring_.size()].emplace(std::move(value));
        ++count_;
        lock.unlock();
        not_empty_.notify_one();
    }

    void close() {
        {
            std::lock_guard lock(mutex_);
            closed_ = true;
        }
        not_empty_.notify_all();
    }

    // The next value, or nothing once the queue is closed and empty.
    std::optional<T> pop() {
        std::unique_lock lock(mutex_);
        not_empty_.wait(lock, [&] { return count_ > 0 || closed_; });
        if (count_ == 0) return std::nullopt;
        std::optional<T> value = std::move(ring_[head_]);
        ring_[head_].reset();
        head_ = (head_ + 1) % ring_.size();
        --count_;
        lock.unlock();
        not_full_.notify_one();
        return value;
    }

private:
    std::mutex mutex_;
    std::condition_variable not_empty_, not_full_;
    std::vector<std::optional<T>> ring_;
    std::size_t head_ = 0, count_ = 0;
    bool closed_ = false;
};

template <class H>
void run_pairs(const Config& c, std::vector<Tally>& produced, std::vector<Tally>& consumed) {
    const auto seeds = worker_seeds(c.seed, c.threads);
    std::vector<std::unique_ptr<H>> heaps;
    std::vector<std::unique_ptr<BoundedQueue<typename H::Bytes>>> queues;
    for (unsigned i = 0; i < c.threads; ++i) {
        heaps.push_back(std::make_unique<H>(c.variant, /*synchronized=*/true));
        queues.push_back(std::make_unique<BoundedQueue<typename H::Bytes>>(kQueue));
    }
    std::vector<std::thread> threads;
    for (unsigned i = 0; i < c.threads; ++i) {
        threads.emplace_back([&, i] {  // producer
            Rng rng(seeds[i]);
            const u64 count = share(c.size, c.threads, i);
            Tally& t = produced[i];
            for (u64 k = 0; k < count; ++k) {
                const u64 len = 16 + rng.below(4081);
                auto message = heaps[i]->bytes(len, fill_byte(t.objects));
                t.object(len);
                queues[i]->push(std::move(message));
            }
            queues[i]->close();
            t.work = count;
            t.draws = rng.draws();
        });
        threads.emplace_back([&, i] {  // consumer
            while (auto message = queues[i]->pop()) {
                consumed[i].touch(*message);
                message.reset();  // freed here, on the consumer's thread
            }
        });
    }
    for (auto& t : threads) t.join();
    queues.clear();
    for (unsigned i = 0; i < c.threads; ++i) produced[i].upstream = heaps[i]->upstream();
}

Report producer_consumer(const Config& c) {
    std::vector<Tally> produced(c.threads), consumed(c.threads);
    if (c.variant == Variant::New)
        run_pairs<NewHeap>(c, produced, consumed);
    else
        run_pairs<PmrHeap>(c, produced, consumed);
    Tally total;
    for (unsigned i = 0; i < c.threads; ++i) total += produced[i], total += consumed[i];
    Report r = Report::from(total);
    r.add("pairs", c.threads).add("queue_capacity", kQueue);
    return r.upstream(total);
}

// --- cache ----------------------------------------------------------------------------------

constexpr std::size_t kCacheCapacity = 4096;
constexpr u64 kCacheKeys = 16384;

// The classic LRU: a list of entries (most recent first) and a hash map from key to list node.
// Each insert allocates a list node, a map node and the value.
template <class H>
class Lru {
public:
    explicit Lru(H& heap) : entries_(heap.template list<Entry>()), index_(heap.template map<u64, Iter>()) {
        index_.reserve(kCacheCapacity + 1);  // no rehashing: the map's allocations are its nodes
    }

    const typename H::Bytes* get(u64 key) {
        auto it = index_.find(key);
        if (it == index_.end()) return nullptr;
        entries_.splice(entries_.begin(), entries_, it->second);
        return &it->second->value;
    }

    // Inserts a new key as most recent; returns whether that evicted the least recent entry.
    bool insert(u64 key, typename H::Bytes value) {
        entries_.push_front(Entry{key, std::move(value)});
        index_.emplace(key, entries_.begin());
        if (index_.size() <= kCacheCapacity) return false;
        index_.erase(entries_.back().key);
        entries_.pop_back();  // frees the evicted value
        return true;
    }

private:
    struct Entry {
        u64 key;
        typename H::Bytes value;
    };
    using Iter = typename H::template List<Entry>::iterator;

    typename H::template List<Entry> entries_;
    typename H::template Map<u64, Iter> index_;
};

struct CacheResult {
    Tally tally;
    u64 hits = 0, evictions = 0;
};

template <class H>
CacheResult cache_worker(H& heap, u64 count, u64 seed) {
    Rng rng(seed);
    CacheResult r;
    Tally& t = r.tally;
    {
        Lru<H> lru(heap);
        for (u64 i = 0; i < count; ++i) {
            const u64 key = rng.below(1 + rng.below(kCacheKeys));
            if (const auto* value = lru.get(key)) {
                t.touch(*value);
                ++r.hits;
                continue;
            }
            const u64 len = 16 + rng.below(1009);
            auto value = heap.bytes(len, fill_byte(t.objects));
            t.object(len);
            t.touch(value);
            r.evictions += lru.insert(key, std::move(value)) ? 1 : 0;
        }
    }
    t.work = count;
    t.draws = rng.draws();
    t.upstream = heap.upstream();
    return r;
}

Report cache(const Config& c) {
    Tally total;
    u64 hits = 0, evictions = 0;
    for (const auto& r : parallel(c, [&](unsigned, u64 count, u64 seed) {
             return with_heap(c.variant, [&](auto& heap) { return cache_worker(heap, count, seed); });
         })) {
        total += r.tally;
        hits += r.hits;
        evictions += r.evictions;
    }
    Report rep = Report::from(total);
    rep.add("capacity", kCacheCapacity).add("hits", hits).add("misses", total.objects).add("evictions", evictions);
    return rep.upstream(total);
}

// --- command line ---------------------------------------------------------------------------

struct Scenario {
    std::string_view name;
    u64 default_size;
    Report (*run)(const Config&);
    bool monotonic_ok;  // a monotonic resource frees nothing individually: not for long-lived
                        // structures with eviction nor objects freed on another thread
};

// Default sizes: each run takes about 1-5 s on the project's machine.
constexpr std::array<Scenario, 6> kScenarios{{
    {"binary-trees", 18, binary_trees, true},
    {"churn", 24000000, churn, true},
    {"fragmentation", 10000000, fragmentation, true},
    {"growth", 40000, growth, true},
    {"producer-consumer", 5000000, producer_consumer, false},
    {"cache", 24000000, cache, false},
}};

std::string_view variant_name(Variant v) {
    switch (v) {
        case Variant::New: return "new";
        case Variant::PmrPool: return "pmr-pool";
        case Variant::PmrMonotonic: return "pmr-monotonic";
    }
    return "?";
}

std::string json_str(std::string_view s) {
    std::string out = "\"";
    for (char ch : s) {
        if (ch == '"' || ch == '\\') out += '\\';
        out += ch;
    }
    return out + "\"";
}

int usage(const std::string& error) {
    if (!error.empty()) std::fprintf(stderr, "error: %s\n", error.c_str());
    std::fprintf(stderr,
                 "usage: alloc-cpp <scenario> [--size N] [--seed S] [--threads T] [--variant new|pmr-pool|pmr-monotonic]\n"
                 "       alloc-cpp --list [--variant V]\nscenarios:");
    for (const auto& s : kScenarios) std::fprintf(stderr, " %.*s", static_cast<int>(s.name.size()), s.name.data());
    std::fprintf(stderr, "\n");
    return 2;
}

bool parse_u64(const std::string& s, u64& out) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return false;
    out = std::strtoull(s.c_str(), nullptr, 10);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    Config c;
    bool list = false, have_size = false;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i], value;
        bool inline_value = false;
        if (arg.rfind("--", 0) == 0 && arg.find('=') != std::string::npos) {
            value = arg.substr(arg.find('=') + 1);
            arg = arg.substr(0, arg.find('='));
            inline_value = true;
        }
        auto next = [&]() -> bool {
            if (inline_value) return true;
            if (i + 1 >= argc) return false;
            value = argv[++i];
            return true;
        };
        u64 n = 0;
        if (arg == "--size" || arg == "--seed" || arg == "--threads") {
            if (!next() || !parse_u64(value, n)) return usage(arg + " needs a number");
            if (arg == "--size") c.size = n, have_size = true;
            if (arg == "--seed") c.seed = n;
            if (arg == "--threads") c.threads = static_cast<unsigned>(n);
        } else if (arg == "--variant") {
            if (!next()) return usage("--variant needs a value");
            if (value == "new" || value == "default") c.variant = Variant::New;
            else if (value == "pmr-pool") c.variant = Variant::PmrPool;
            else if (value == "pmr-monotonic") c.variant = Variant::PmrMonotonic;
            else return usage("unknown variant " + value);
        } else if (arg == "--list") {
            list = true;
        } else if (arg == "-h" || arg == "--help") {
            return usage("");
        } else if (arg.rfind("-", 0) == 0) {
            return usage("unknown option " + arg);
        } else if (c.scenario.empty()) {
            c.scenario = arg;
        } else {
            return usage("unexpected argument " + arg);
        }
    }
    const std::string head = "{\"lang\":\"cpp\",\"variant\":" + json_str(variant_name(c.variant)) +
                             ",\"toolchain\":" + json_str("g++ " __VERSION__);
    if (list) {
        std::string names, sizes;
        for (const auto& s : kScenarios) {
            if (c.variant == Variant::PmrMonotonic && !s.monotonic_ok) continue;
            names += (names.empty() ? "" : ",") + json_str(s.name);
            sizes += (sizes.empty() ? "" : ",") + json_str(s.name) + ":" + std::to_string(s.default_size);
        }
        std::printf("%s,\"scenarios\":[%s],\"default_sizes\":{%s}}\n", head.c_str(), names.c_str(), sizes.c_str());
        return 0;
    }
    if (c.scenario.empty()) return usage("no scenario given");
    const auto* scenario = std::find_if(kScenarios.begin(), kScenarios.end(),
                                        [&](const Scenario& s) { return s.name == c.scenario; });
    if (scenario == kScenarios.end()) return usage("unknown scenario " + c.scenario);
    if (c.threads == 0) return usage("--threads must be at least 1");
    if (c.variant == Variant::PmrMonotonic && !scenario->monotonic_ok)
        return usage("scenario " + c.scenario + " is not supported by the pmr-monotonic variant");
    if (!have_size) c.size = scenario->default_size;

    const auto start = std::chrono::steady_clock::now();
    const Report r = scenario->run(c);
    const double elapsed_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::string extra;
    for (const auto& [k, v] : r.extra) extra += (extra.empty() ? "" : ",") + json_str(k) + ":" + std::to_string(v);
    std::printf(
        "%s,\"scenario\":%s,\"size\":%llu,\"seed\":%llu,\"threads\":%u,\"work_units\":%llu,\"objects\":%llu,"
        "\"bytes_requested\":%llu,\"elapsed_ms\":%.1f,\"extra\":{%s}}\n",
        head.c_str(), json_str(c.scenario).c_str(), static_cast<unsigned long long>(c.size),
        static_cast<unsigned long long>(c.seed), c.threads, static_cast<unsigned long long>(r.work_units),
        static_cast<unsigned long long>(r.objects), static_cast<unsigned long long>(r.bytes_requested), elapsed_ms,
        extra.c_str());
    return 0;
}
