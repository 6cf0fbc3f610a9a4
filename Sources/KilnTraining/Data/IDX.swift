import Foundation
import KilnCore
import KilnGraph

/// The IDX format of (Fashion-)MNIST: a magic number giving the element type and rank, big-endian
/// dimensions, then the data. Gzip-compressed files are decompressed first.
public struct IDXFile {
    public var shape: [Int]
    /// The unsigned bytes of the data (MNIST files hold type 0x08, unsigned byte).
    public var bytes: [UInt8]

    public static func read(path: String) throws -> IDXFile {
        let budget = Context.current.memoryBudget
        var raw: [UInt8]
        do { raw = try FileBytes.read(path: path, limit: budget, what: "IDX file") } catch let e as KilnError {
            throw KilnError.dataset("\(e)")
        }
        if raw.count >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
            raw = try Gzip.decompress(raw, limit: budget ?? Int.max, name: path)
        }
        return try parse(raw, name: path)
    }

    public static func parse(_ raw: [UInt8], name: String) throws -> IDXFile {
        guard raw.count >= 4, raw[0] == 0, raw[1] == 0 else { throw KilnError.dataset("\(name): not an IDX file (bad magic)") }
        guard raw[2] == 0x08 else { throw KilnError.dataset("\(name): element type 0x\(String(raw[2], radix: 16)) is not unsigned byte") }
        let rank = Int(raw[3])
        guard rank >= 1 && rank <= 4, raw.count >= 4 + 4 * rank else { throw KilnError.dataset("\(name): bad rank \(rank) or truncated header") }
        var shape: [Int] = []
        for d in 0..<rank {
            let o = 4 + 4 * d
            shape.append(Int(raw[o]) << 24 | Int(raw[o + 1]) << 16 | Int(raw[o + 2]) << 8 | Int(raw[o + 3]))
        }
        let count = try Shapes.count(shape, context: name)
        let start = 4 + 4 * rank
        guard raw.count - start == count else {
            throw KilnError.dataset("\(name): header says \(count) bytes of data, file has \(raw.count - start)")
        }
        return IDXFile(shape: shape, bytes: Array(raw[start...]))
    }
}

/// One split of an image dataset in MNIST's file layout: `train-` or `t10k-images-idx3-ubyte[.gz]` and the
/// matching `-labels-idx1-ubyte[.gz]` in one directory, images (N, H, W) with one label each. `side` requires
/// that image size; `missing` words the error for a file that is not there.
struct IDXSplit {
    var images: IDXFile
    var labels: IDXFile

    static func read(directory: String, train: Bool, side: (Int, Int)? = nil,
                     missing: (String) -> KilnError) throws -> IDXSplit {
        let prefix = train ? "train" : "t10k"
        func find(_ base: String) throws -> String {
            for name in [base + ".gz", base] where FileManager.default.fileExists(atPath: directory + "/" + name) {
                return directory + "/" + name
            }
            throw missing(base)
        }
        let img = try IDXFile.read(path: try find("\(prefix)-images-idx3-ubyte"))
        let lab = try IDXFile.read(path: try find("\(prefix)-labels-idx1-ubyte"))
        guard img.shape.count == 3, side.map({ img.shape[1] == $0.0 && img.shape[2] == $0.1 }) ?? true else {
            let expected = side.map { "(N, \($0.0), \($0.1))" } ?? "(N, H, W)"
            throw KilnError.dataset("\(directory): images have shape \(img.shape), expected \(expected)")
        }
        guard lab.shape == [img.shape[0]] else {
            throw KilnError.dataset("\(directory): \(lab.shape) labels for \(img.shape[0]) images")
        }
        return IDXSplit(images: img, labels: lab)
    }
}

/// Fashion-MNIST as Debian's `dataset-fashion-mnist` installs it (or from another directory).
public struct FashionMNIST {
    public static let defaultDirectory = "/usr/share/datasets/fashion-mnist"
    public static let installHint = "install it with: sudo apt-get install -y dataset-fashion-mnist (or pass --data-dir DIR)"

    /// Images as raw 0...255 values (N, 1, 28, 28) in float, labels (N, 1).
    public var images: [Float]
    public var labels: [Int32]
    public var count: Int

    public static func load(train: Bool, directory: String = FashionMNIST.defaultDirectory) throws -> FashionMNIST {
        let split = try IDXSplit.read(directory: directory, train: train, side: (28, 28)) { base in
            KilnError.dataset("Fashion-MNIST file \(base)(.gz) not found in \(directory); \(installHint)")
        }
        guard split.labels.bytes.allSatisfy({ $0 < 10 }) else { throw KilnError.dataset("\(directory): a label is outside 0...9") }
        return FashionMNIST(images: split.images.bytes.map { Float($0) }, labels: split.labels.bytes.map { Int32($0) },
                            count: split.images.shape[0])
    }
}
