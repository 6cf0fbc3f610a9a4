import Foundation
import KilnCore
import KilnGraph

/// Labelled images for classification, from any of the formats `kiln train --dataset` reads, each split
/// (training or test) on its own. Images keep the values their file holds (0...255 for 8-bit data), laid out
/// per sample as (channels, height, width).
public struct ImageDataset {
    /// Where the data came from, for messages.
    public var name: String
    /// `count` samples of `sampleShape`, one after the other.
    public var images: [Float]
    public var labels: [Int32]
    /// (channels, height, width).
    public var sampleShape: [Int]
    public var count: Int

    public var sampleSize: Int { sampleShape.reduce(1, *) }
    /// Labels run over 0..<classes.
    public var classes: Int { Int(labels.max() ?? 0) + 1 }

    public init(name: String, images: [Float], labels: [Int32], sampleShape: [Int]) throws {
        let size = sampleShape.reduce(1, *)
        guard sampleShape.count == 3, size > 0, images.count % size == 0, images.count / size == labels.count,
              !labels.isEmpty else {
            throw KilnError.dataset("\(name): \(labels.count) labels for \(images.count) values of images shaped \(sampleShape)")
        }
        if let bad = labels.firstIndex(where: { $0 < 0 }) {
            throw KilnError.dataset("\(name): label \(labels[bad]) of sample \(bad) is negative (labels are class indices)")
        }
        self.name = name
        self.images = images
        self.labels = labels
        self.sampleShape = sampleShape
        count = labels.count
    }

    /// The split named by `spec`:
    /// - `fashion-mnist`: Debian's dataset-fashion-mnist (or `directory`);
    /// - a directory of IDX files in MNIST's layout (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte`,
    ///   `t10k-...`): MNIST, Fashion-MNIST, KMNIST and their kin;
    /// - a directory of `x_train.npy`, `y_train.npy`, `x_test.npy`, `y_test.npy`, or an `.npz` holding those
    ///   four arrays (Keras' layout): images N x H x W, N x C x H x W or N x H x W x C (C of 1 or 3);
    /// - a `.csv` file in nnabla's dataset format, its first variable the image and its second the label (the
    ///   test split is then the file named by `testSpec`).
    public static func load(_ spec: String, train: Bool, directory: String = FashionMNIST.defaultDirectory,
                            testSpec: String? = nil) throws -> ImageDataset {
        if spec == "fashion-mnist" {
            let f = try FashionMNIST.load(train: train, directory: directory)
            return try ImageDataset(name: "Fashion-MNIST", images: f.images, labels: f.labels, sampleShape: [1, 28, 28])
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: spec, isDirectory: &isDirectory) else {
            throw KilnError.dataset("\(spec): no such file or directory (give fashion-mnist, an IDX or .npy directory, an .npz or a .csv file)")
        }
        if isDirectory.boolValue {
            let split = train ? "train" : "t10k"
            let idx = ["\(split)-images-idx3-ubyte", "\(split)-images-idx3-ubyte.gz"].map { spec + "/" + $0 }
            if idx.contains(where: FileManager.default.fileExists) { return try loadIDX(spec, train: train) }
            let part = train ? "train" : "test"
            let x = spec + "/x_\(part).npy", y = spec + "/y_\(part).npy"
            guard FileManager.default.fileExists(atPath: x), FileManager.default.fileExists(atPath: y) else {
                throw KilnError.dataset("dataset directory \(spec) holds neither \(split)-images-idx3-ubyte[.gz] (IDX) nor x_\(part).npy and y_\(part).npy")
            }
            return try fromNumpy(x: NumpyArray.read(path: x), y: NumpyArray.read(path: y), name: "\(spec) (\(part))")
        }
        if spec.hasSuffix(".npz") {
            let arrays = try NumpyArray.readArchive(path: spec)
            let part = train ? "train" : "test"
            guard let x = arrays["x_\(part)"], let y = arrays["y_\(part)"] else {
                throw KilnError.dataset("\(spec) holds \(arrays.keys.sorted()), not x_\(part) and y_\(part)")
            }
            return try fromNumpy(x: x, y: y, name: "\(spec) (\(part))")
        }
        if spec.hasSuffix(".csv") {
            if train { return try fromCSV(spec) }
            guard let testSpec else {
                throw KilnError.dataset("a CSV dataset has no test split of its own: give the test file too (--test-dataset)")
            }
            return try fromCSV(testSpec)
        }
        throw KilnError.dataset("\(spec): not a directory, an .npz or a .csv file")
    }

    static func loadIDX(_ directory: String, train: Bool) throws -> ImageDataset {
        let split = try IDXSplit.read(directory: directory, train: train) { base in
            KilnError.dataset("\(directory): \(base)(.gz) not found")
        }
        let shape = split.images.shape
        return try ImageDataset(name: directory, images: split.images.bytes.map { Float($0) },
                                labels: split.labels.bytes.map { Int32($0) }, sampleShape: [1, shape[1], shape[2]])
    }

    /// Images N x H x W, N x C x H x W (C of 1 or 3) or N x H x W x C (moved to channels first); labels N or
    /// N x 1 of whole numbers. Where both readings fit (3x3 images of 3 channels), channels first wins, as
    /// nnabla lays images out.
    static func fromNumpy(x: NumpyArray, y: NumpyArray, name: String) throws -> ImageDataset {
        let s = x.shape
        guard let n = s.first, y.count == n, y.shape.count == 1 || (y.shape.count == 2 && y.shape[1] == 1) else {
            throw KilnError.dataset("\(name): images of shape \(s) and labels of shape \(y.shape) do not pair up")
        }
        let labels = try y.values.enumerated().map { i, v -> Int32 in
            guard v == v.rounded(), v >= 0, v <= Double(Int32.max) else {
                throw KilnError.dataset("\(name): label \(v) of sample \(i) is not a class index")
            }
            return Int32(v)
        }
        let images = x.values.map { Float($0) }
        switch s.count {
        case 3:
            return try ImageDataset(name: name, images: images, labels: labels, sampleShape: [1, s[1], s[2]])
        case 4 where s[1] == 1 || s[1] == 3:
            return try ImageDataset(name: name, images: images, labels: labels, sampleShape: [s[1], s[2], s[3]])
        case 4 where s[3] == 1 || s[3] == 3:
            let (h, w, c) = (s[1], s[2], s[3])
            var chw = [Float](repeating: 0, count: images.count)
            for i in 0..<n { for p in 0..<(h * w) { for k in 0..<c { chw[(i * c + k) * h * w + p] = images[(i * h * w + p) * c + k] } } }
            return try ImageDataset(name: name, images: chw, labels: labels, sampleShape: [c, h, w])
        default:
            throw KilnError.dataset("\(name): images of shape \(s): expected N x H x W, N x C x H x W or N x H x W x C with C of 1 or 3")
        }
    }

    /// nnabla's CSV dataset: the first variable is the image (H x W, C x H x W, or a flat vector of a square
    /// number of grey pixels, `x__0 ... x__k` columns), the second the label.
    static func fromCSV(_ path: String) throws -> ImageDataset {
        let source = try CSVDataSource(path: path)
        guard source.variables.count >= 2, source.shapes[1].reduce(1, *) == 1 else {
            throw KilnError.dataset("\(path): needs an image variable and then a label variable of one value, has \(source.variables) shaped \(source.shapes)")
        }
        let shape = source.shapes[0]
        let sampleShape: [Int]
        let side = Int(Double(shape.first ?? 0).squareRoot().rounded())
        switch shape.count {
        case 1 where side * side == shape[0] && side > 0: sampleShape = [1, side, side]
        case 2: sampleShape = [1] + shape
        case 3: sampleShape = shape
        default: throw KilnError.dataset("\(path): images of shape \(shape), expected H x W, C x H x W or a square number of pixels")
        }
        var images: [Float] = [], labels: [Int32] = []
        images.reserveCapacity(source.size * sampleShape.reduce(1, *))
        for i in 0..<source.size {
            let s = try source.sample(i)
            images += s[0]
            let v = s[1][0]
            guard v == v.rounded(), v >= 0, v <= 2_147_483_520 else {
                throw KilnError.dataset("\(path): label \(v) of sample \(i) is not a class index")
            }
            labels.append(Int32(v))
        }
        return try ImageDataset(name: path, images: images, labels: labels, sampleShape: sampleShape)
    }
}

/// How a dataset's images become a model's input, as a user would expect: grey images are repeated into
/// three channels for RGB models, and smaller images are centred on a zero background (Fashion-MNIST's 28x28
/// become ResNet-20's 32x32). Larger images, or channel counts that do not map, are refused.
public struct ImageAdapter: Sendable {
    public let from: [Int]
    public let to: [Int]

    public init(from: [Int], to: [Int]) throws {
        guard from.count == 3, to.count == 3 else { throw KilnError.invalidShape("images must be (C, H, W), got \(from) for \(to)") }
        guard from[0] == to[0] || from[0] == 1 else {
            throw KilnError.invalidShape("images of \(from[0]) channels cannot feed a model taking \(to[0])")
        }
        guard from[1] <= to[1], from[2] <= to[2] else {
            throw KilnError.invalidShape("images of \(from[1])x\(from[2]) are larger than the model's \(to[1])x\(to[2]) input")
        }
        self.from = from
        self.to = to
    }

    public var isIdentity: Bool { from == to }

    /// A description for the training banner ("grey 28x28 -> 3 channels, centred in 32x32").
    public var summary: String {
        var parts: [String] = []
        if from[0] != to[0] { parts.append("channel repeated into \(to[0])") }
        if from[1] != to[1] || from[2] != to[2] { parts.append("\(from[1])x\(from[2]) centred in \(to[1])x\(to[2]) (zero border)") }
        return parts.isEmpty ? "as is" : parts.joined(separator: ", ")
    }

    /// Writes one adapted sample into `output` (to.reduce(1, *) values).
    public func adapt(_ input: ArraySlice<Float>, into output: inout [Float]) {
        let (c, h, w) = (to[0], to[1], to[2])
        let top = (h - from[1]) / 2, left = (w - from[2]) / 2
        if output.count != c * h * w { output = [Float](repeating: 0, count: c * h * w) }
        for k in output.indices { output[k] = 0 }
        let base = input.startIndex
        for ch in 0..<c {
            let src = from[0] == 1 ? 0 : ch
            for y in 0..<from[1] {
                for x in 0..<from[2] {
                    output[(ch * h + y + top) * w + x + left] = input[base + (src * from[1] + y) * from[2] + x]
                }
            }
        }
    }
}

/// Random crops with zero padding and horizontal flips, as image classifiers train with (`kiln train
/// --random-crop`, `--flip`). Deterministic for a seed.
public final class ImageAugmentation {
    public let pad: Int
    public let flip: Bool
    private let rng: NumpyRandom

    public init(pad: Int, flip: Bool, seed: UInt32) {
        self.pad = pad
        self.flip = flip
        rng = NumpyRandom(seed: seed)
    }

    public var isIdentity: Bool { pad == 0 && !flip }

    /// Augments one (C, H, W) sample in place: shifted by up to `pad` pixels each way (zeros filling in, as a
    /// crop of the zero-padded image), then mirrored left to right half of the time.
    public func apply(_ image: inout [Float], shape: [Int]) {
        let (c, h, w) = (shape[0], shape[1], shape[2])
        let dy = pad > 0 ? rng.randint(-pad, pad + 1) : 0
        let dx = pad > 0 ? rng.randint(-pad, pad + 1) : 0
        let mirror = flip && rng.randint(0, 2) == 1
        guard dy != 0 || dx != 0 || mirror else { return }
        let source = image
        for ch in 0..<c {
            for y in 0..<h {
                for x in 0..<w {
                    let sy = y + dy, sxRaw = x + dx
                    let sx = mirror ? w - 1 - sxRaw : sxRaw
                    let inside = sy >= 0 && sy < h && sx >= 0 && sx < w
                    image[(ch * h + y) * w + x] = inside ? source[(ch * h + sy) * w + sx] : 0
                }
            }
        }
    }
}
