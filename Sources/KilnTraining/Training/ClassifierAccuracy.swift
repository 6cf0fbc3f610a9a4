import KilnCore
import KilnGraph
import KilnCompiler
import KilnRuntime

/// Top-1 accuracy of a classifier graph on a labelled image set (what `kiln evaluate` prints): the graph's
/// `input` (N, C, H, W) or (N, H, W) is fed batch after batch of the set's images, adapted to its shape, and the
/// largest of each row of `scores` (N, classes) is compared with the label. One inference plan runs every batch;
/// the last, partial batch is filled up with the set's first images, which are not counted.
public enum ClassifierAccuracy {
    public struct Result: Sendable {
        public var correct: Int
        public var total: Int
        public var accuracy: Double { total > 0 ? Double(correct) / Double(total) : 0 }
    }

    public static func evaluate(scores: Variable, input: Variable, on set: ImageDataset, maxImages: Int? = nil,
                                progress: ((Int, Int) -> Void)? = nil) throws -> Result {
        guard input.ndim == 4 || input.ndim == 3, scores.ndim == 2, scores.shape[0] == input.shape[0] else {
            throw KilnError.invalidData("evaluation needs images (N, C, H, W) or (N, H, W) in and class scores (N, classes) out, got \(input.shape) and \(scores.shape)")
        }
        let batch = input.shape[0], classes = scores.shape[1]
        let shape = input.ndim == 4 ? Array(input.shape.dropFirst()) : [1] + input.shape.dropFirst()
        let adapter = try ImageAdapter(from: set.sampleShape, to: shape)
        guard set.classes <= classes else {
            throw KilnError.dataset("\(set.name) has \(set.classes) classes; the model scores \(classes)")
        }
        let total = min(set.count, maxImages ?? set.count)
        let exe = try Compiler.compile(scores, .inference)
        let size = set.sampleSize, sample = shape.reduce(1, *)
        var data = [Float](repeating: 0, count: batch * sample), image: [Float] = []
        var correct = 0, start = 0
        while start < total {
            for j in 0..<batch {
                let i = start + j < total ? start + j : j % total
                adapter.adapt(set.images[(i * size)..<((i + 1) * size)], into: &image)
                data.replaceSubrange((j * sample)..<((j + 1) * sample), with: image)
            }
            try input.setData(data)
            try exe.run()
            let s = scores.d
            for j in 0..<min(batch, total - start) {
                let row = s[(j * classes)..<((j + 1) * classes)]
                // The first of equal maxima, as nnabla's top_n_error.
                var best = row.startIndex
                for k in row.indices where row[k] > row[best] { best = k }
                if best - row.startIndex == Int(set.labels[start + j]) { correct += 1 }
            }
            start += batch
            progress?(min(start, total), total)
        }
        return Result(correct: correct, total: total)
    }
}
