import Foundation
import Testing
@testable import Kiln

/// NumPy files and the image datasets `kiln train --dataset` reads. The fixtures in Fixtures/numpy were
/// written by NumPy 2.4 (`np.save`, `np.savez_compressed`, `format.write_array(version=(2, 0))`), and
/// expected.json holds the values NumPy itself read back: nothing below is derived from Kiln's reader.
struct ImageDatasetTests {
    static let folder = Bundle.module.bundleURL.appendingPathComponent("Fixtures/numpy")
    static func path(_ name: String) -> String { folder.appendingPathComponent(name).path }
    static func expected() throws -> [String: Any] {
        let data = try Data(contentsOf: folder.appendingPathComponent("expected.json"))
        return try #require(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test(arguments: ["f2", "f8be", "i1", "u2", "i8", "b1", "v2"])
    func everyElementTypeReadsAsNumPyReadsIt(_ name: String) throws {
        let types = try #require(Self.expected()["types"] as? [String: [String: Any]])
        let want = try #require(types[name])
        let a = try NumpyArray.read(path: Self.path("\(name).npy"))
        #expect(a.shape == (want["shape"] as? [Int]))
        #expect(a.values == (want["values"] as? [Double]))
    }

    @Test func anNpzArchiveGivesBothSplits() throws {
        let tiny = try #require(Self.expected()["tiny"] as? [String: [Double]])
        let train = try ImageDataset.load(Self.path("tiny.npz"), train: true)
        let test = try ImageDataset.load(Self.path("tiny.npz"), train: false)
        #expect(train.sampleShape == [1, 4, 4] && train.count == 6 && test.count == 3)
        #expect(train.images.map(Double.init) == tiny["x_train"])
        #expect(train.labels.map(Double.init) == tiny["y_train"])
        #expect(test.images.map(Double.init) == tiny["x_test"])
        #expect(test.labels.map(Double.init) == tiny["y_test"])
        #expect(train.classes == 3)
    }

    @Test func channelsLastImagesAreMovedToChannelsFirst() throws {
        let want = try #require(Self.expected()["nhwc_chw_x_train"] as? [Double])
        let train = try ImageDataset.load(Self.path("nhwc"), train: true)
        #expect(train.sampleShape == [3, 4, 4])
        #expect(train.images == want.map { Float($0) })   // float32 data: compare as float32
        #expect(train.labels == [1, 0, 1, 0])
    }

    @Test func malformedNumPyFilesAreRefusedByName() throws {
        let good = Array(try Data(contentsOf: Self.folder.appendingPathComponent("v2.npy")))
        // Truncated data, a lying shape, no magic, an unknown element type, Fortran order.
        var cases: [(String, [UInt8])] = [("truncated", Array(good.dropLast(4))), ("no magic", Array(good.dropFirst(1)))]
        func header(_ dict: String, data: Int) -> [UInt8] {
            var h = Array(dict.utf8)
            while (10 + h.count + 1) % 64 != 0 { h.append(0x20) }
            h.append(0x0A)
            return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(h.count & 0xFF), UInt8(h.count >> 8)] + h + [UInt8](repeating: 0, count: data)
        }
        cases.append(("huge shape", header("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", data: 16)))
        cases.append(("complex", header("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", data: 16)))
        cases.append(("fortran", header("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", data: 16)))
        cases.append(("object", header("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", data: 8)))
        for (name, bytes) in cases {
            #expect(throws: KilnError.self, "\(name)") { try NumpyArray.parse(bytes, name: name) }
        }
        // The well-formed header helper does make readable files.
        let ok = try NumpyArray.parse(header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", data: 16), name: "ok")
        #expect(ok.shape == [2, 2] && ok.values == [0, 0, 0, 0])
    }

    @Test func greyImagesFeedAnRGBModelCentredOnZeros() throws {
        let a = try ImageAdapter(from: [1, 2, 2], to: [3, 4, 4])
        var out: [Float] = []
        a.adapt([1, 2, 3, 4][...], into: &out)
        let plane: [Float] = [0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0]
        #expect(out == plane + plane + plane)
        #expect(throws: KilnError.self) { try ImageAdapter(from: [1, 5, 5], to: [1, 4, 4]) }
        #expect(throws: KilnError.self) { try ImageAdapter(from: [3, 4, 4], to: [1, 4, 4]) }
        #expect(try ImageAdapter(from: [1, 28, 28], to: [1, 28, 28]).isIdentity)
    }

    @Test func augmentationShiftsAndMirrorsWithinTheImage() throws {
        let image: [Float] = (1...9).map(Float.init)   // one 3x3 channel
        let aug = ImageAugmentation(pad: 1, flip: true, seed: 4)
        var seen = Set<[Float]>()
        for _ in 0..<200 {
            var x = image
            aug.apply(&x, shape: [1, 3, 3])
            // Every result is the image shifted by at most one pixel each way and possibly mirrored, zeros
            // filling in: check it against all 18 candidates built by hand.
            var candidates: [[Float]] = []
            for dy in -1...1 { for dx in -1...1 { for mirror in [false, true] {
                var c = [Float](repeating: 0, count: 9)
                for y in 0..<3 { for xx in 0..<3 {
                    let sy = y + dy, sx0 = xx + dx, sx = mirror ? 2 - sx0 : sx0
                    if sy >= 0 && sy < 3 && sx >= 0 && sx < 3 { c[y * 3 + xx] = image[sy * 3 + sx] }
                } }
                candidates.append(c)
            } } }
            #expect(candidates.contains(x))
            seen.insert(x)
        }
        #expect(seen.count > 9, "the shifts and flips do vary")
        var same = image
        ImageAugmentation(pad: 0, flip: false, seed: 1).apply(&same, shape: [1, 3, 3])
        #expect(same == image)
    }
}

/// IDX directories (MNIST's layout) and nnabla CSV datasets, written here by hand from the formats'
/// descriptions.
struct ImageDatasetFormatTests {
    static func idx(_ values: [UInt8], shape: [Int]) -> Data {
        var bytes: [UInt8] = [0, 0, 0x08, UInt8(shape.count)]
        for d in shape { bytes += [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)] }
        return Data(bytes + values)
    }

    @Test func anIDXDirectoryInMNISTsLayoutLoads() throws {
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        try Self.idx([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], shape: [2, 2, 3]).write(to: dir.appendingPathComponent("train-images-idx3-ubyte"))
        try Self.idx([7, 3], shape: [2]).write(to: dir.appendingPathComponent("train-labels-idx1-ubyte"))
        try Self.idx([9, 9, 9, 9, 9, 9], shape: [1, 2, 3]).write(to: dir.appendingPathComponent("t10k-images-idx3-ubyte"))
        try Self.idx([1], shape: [1]).write(to: dir.appendingPathComponent("t10k-labels-idx1-ubyte"))
        let train = try ImageDataset.load(dir.path, train: true), test = try ImageDataset.load(dir.path, train: false)
        #expect(train.sampleShape == [1, 2, 3] && train.images == (0..<12).map(Float.init) && train.labels == [7, 3])
        #expect(test.count == 1 && test.labels == [1] && train.classes == 8)
    }

    @Test func aCSVDatasetWithItsTestFileLoads() throws {
        let dir = try KilnProcess.directory([
            "train.csv": "x__0,x__1,x__2,x__3,y:label\n1,2,3,4,0\n5,6,7,8,1\n",
            "test.csv": "x__0,x__1,x__2,x__3,y:label\n9,9,9,9,1\n",
            "odd.csv": "x__0,x__1,x__2,y\n1,2,3,0\n",
        ])
        defer { try? FileManager.default.removeItem(at: dir) }
        let train = try ImageDataset.load(dir.path + "/train.csv", train: true)
        let test = try ImageDataset.load(dir.path + "/train.csv", train: false, testSpec: dir.path + "/test.csv")
        #expect(train.sampleShape == [1, 2, 2] && train.images == [1, 2, 3, 4, 5, 6, 7, 8] && train.labels == [0, 1])
        #expect(test.images == [9, 9, 9, 9] && test.labels == [1])
        #expect(throws: KilnError.self) { try ImageDataset.load(dir.path + "/train.csv", train: false) }
        #expect(throws: KilnError.self) { try ImageDataset.load(dir.path + "/odd.csv", train: true) }
    }
}
