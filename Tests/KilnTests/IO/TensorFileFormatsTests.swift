import Foundation
import Testing
@testable import Kiln

/// `kiln run`'s tensor files in every format it takes: JSON (NaN and the infinities kept), .safetensors
/// (int32 exact) and .npy (one array named by the file's stem), written and read back.
@Suite struct TensorFileFormatsTests {
    static func scratch() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("tensors-\(UUID())")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    @Test func npyIsReadBackByTheNumpyParser() throws {
        let d = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: d) }
        let e = TensorFile.Entry(shape: [2, 3], data: [1, -2.5, .infinity, 0, 3e-8, .nan])
        let path = d.appendingPathComponent("y.npy").path
        try TensorFile.write([("y", e)], to: path)
        let a = try NumpyArray.read(path: path)
        #expect(a.shape == [2, 3] && a.descr == "<f4")
        #expect(a.values.prefix(5).map { Float($0) } == Array(e.data.prefix(5)) && a.values[5].isNaN)
        let back = try TensorFile.readAny(path: path)
        #expect(back.count == 1 && back[0].0 == "y" && back[0].1.shape == [2, 3])
        // A one-dimensional array has NumPy's one-element tuple.
        try TensorFile.write([("v", TensorFile.Entry(shape: [4], data: [1, 2, 3, 4]))], to: path)
        #expect(try NumpyArray.read(path: path).shape == [4])
        #expect(throws: KilnError.self) {
            try TensorFile.write([("a", e), ("b", e)], to: d.appendingPathComponent("two.npy").path)
        }
    }

    @Test func safetensorsAndJSONKeepEveryValue() throws {
        let d = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: d) }
        let entries: [(String, TensorFile.Entry)] = [("x", TensorFile.Entry(shape: [3], data: [.nan, -.infinity, 16777217])),
                                                     ("grad:y", TensorFile.Entry(shape: [1, 1], data: [0.5]))]
        for ext in ["json", "safetensors"] {
            let path = d.appendingPathComponent("t.\(ext)").path
            try TensorFile.write(entries, to: path)
            let back = try TensorFile.readAny(path: path)
            #expect(Set(back.map { $0.0 }) == ["x", "grad:y"], "\(ext)")
            let x = try #require(back.first { $0.0 == "x" }?.1)
            #expect(x.data[0].isNaN && x.data[1] == -.infinity && x.data[2] == Float(16777217), "\(ext)")
        }
        // int32 tensors in safetensors feed int32 inputs exactly beyond float32's 2^24.
        let ints = try NDArray(shape: [2], dtype: .int32)
        try ints.setInt32s([16_777_217, -3])
        let path = d.appendingPathComponent("labels.safetensors").path
        try SafeTensors.write([("t", ints)], to: path)
        #expect(try TensorFile.readAny(path: path)[0].1.written == [16_777_217, -3])
    }
}
