import KilnCore
import KilnGraph

/// nnabla's `DataIterator`: batches of a data source, optionally shuffled with a seeded generator, epoch
/// after epoch. `next()` returns one batch per variable of the source (e.g. images and labels).
public final class DataIterator {
    /// A source yields sample `i` as one `[Float]` per variable.
    public typealias Load = (Int) throws -> [[Float]]

    public let size: Int
    public let batchSize: Int
    public let shuffle: Bool
    /// Shapes of one sample per variable (without the batch dimension).
    public let sampleShapes: [[Int]]
    public private(set) var epoch = 0
    /// Position within the current epoch.
    public private(set) var position = 0
    /// Distributed training: this iterator's slice of each global batch of `batchSize x slices.count` samples
    /// (rank r of N takes the r-th `batchSize` samples of it), so N ranks together see exactly the batches
    /// one process with batch `N x batchSize` sees.
    public let slices: (index: Int, count: Int)
    private var order: [Int]
    private let rng: NumpyRandom
    private let load: Load
    private var buffers: [[Float]]

    public init(size: Int, batchSize: Int, shuffle: Bool = false, seed: UInt32 = 313, sampleShapes: [[Int]],
                slices: (index: Int, count: Int) = (0, 1), load: @escaping Load) throws {
        guard size > 0 else { throw KilnError.dataset("a data iterator needs at least one sample") }
        guard batchSize > 0 else { throw KilnError.dataset("batch size must be positive, got \(batchSize)") }
        guard slices.count > 0, slices.index >= 0, slices.index < slices.count else {
            throw KilnError.dataset("slice \(slices.index) of \(slices.count) does not exist")
        }
        _ = try (CheckedInt(batchSize) * slices.count).get("batch size \(batchSize) x \(slices.count) slices")
        self.slices = slices
        self.size = size
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.sampleShapes = sampleShapes
        self.load = load
        rng = NumpyRandom(seed: seed)
        order = Array(0..<size)
        // One batch per variable is held: its size is checked against the memory budget before it is allocated
        // (a batch size of 2^40 asked for terabytes).
        var counts: [Int] = []
        var bytes = CheckedInt(0)
        for shape in sampleShapes {
            let count = try (CheckedInt(batchSize) * (try Shapes.count(shape, context: "sample shape"))).get("batch size \(batchSize) x sample shape \(shape)")
            counts.append(count)
            bytes = bytes + CheckedInt(count) * MemoryLayout<Float>.size
        }
        let total = try bytes.get("the bytes of one batch of \(batchSize)")
        if let budget = Context.current.memoryBudget, total > budget {
            throw KilnError.dataset("one batch of \(batchSize) samples takes \(total) bytes, above the memory budget of \(budget) bytes")
        }
        buffers = counts.map { [Float](repeating: 0, count: $0) }
        if shuffle { reshuffle() }
    }

    /// A fresh permutation of the samples: NumPy's `RandomState.permutation(size)` (Fisher-Yates from the
    /// end over `arange(size)`), which nnabla's data sources draw at each epoch. Each epoch starts from the
    /// identity, not from the previous epoch's order.
    private func reshuffle() {
        for k in 0..<order.count { order[k] = k }
        var i = order.count - 1
        while i > 0 {
            let j = rng.randint(0, i + 1)
            order.swapAt(i, j)
            i -= 1
        }
    }

    /// The next batch; wraps into the next epoch (reshuffling) when the data runs out mid-batch, as nnabla.
    public func next() throws -> [[Float]] {
        let sizes = sampleShapes.map { $0.reduce(1, *) }
        let first = slices.index * batchSize
        for g in 0..<(batchSize * slices.count) {
            if position == size {
                position = 0
                epoch += 1
                if shuffle { reshuffle() }
            }
            guard g >= first && g < first + batchSize else { position += 1; continue }
            let b = g - first
            let sample = try load(order[position])
            guard sample.count == sizes.count else {
                throw KilnError.dataset("sample \(order[position]) has \(sample.count) variables, expected \(sizes.count)")
            }
            for (v, values) in sample.enumerated() {
                guard values.count == sizes[v] else {
                    throw KilnError.dataset("sample \(order[position]) variable \(v) has \(values.count) values, expected \(sizes[v])")
                }
                buffers[v].withUnsafeMutableBufferPointer { dst in
                    values.withUnsafeBufferPointer { src in
                        (dst.baseAddress! + b * sizes[v]).update(from: src.baseAddress!, count: sizes[v])
                    }
                }
            }
            position += 1
        }
        return buffers
    }

    /// Restores the position (for resuming training): epoch and position within it.
    public func seek(epoch e: Int, position p: Int) throws {
        guard p >= 0 && p <= size, e >= 0 else { throw KilnError.dataset("cannot seek to epoch \(e) position \(p)") }
        // Replay the shuffles so the order is the one the original run had.
        rng.reset()
        order = Array(0..<size)
        if shuffle { reshuffle(); for _ in 0..<e { reshuffle() } }
        epoch = e
        position = p
    }
}

/// nnabla's `data_iterator_simple`: a source given by a per-sample loader.
public func dataIteratorSimple(load: @escaping DataIterator.Load, size: Int, batchSize: Int, sampleShapes: [[Int]],
                               shuffle: Bool = false, seed: UInt32 = 313) throws -> DataIterator {
    try DataIterator(size: size, batchSize: batchSize, shuffle: shuffle, seed: seed, sampleShapes: sampleShapes, load: load)
}
