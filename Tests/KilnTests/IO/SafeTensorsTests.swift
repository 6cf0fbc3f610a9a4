import Foundation
import Testing
@testable import Kiln

private func tempPath(_ name: String) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-safetensors-\(getpid())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent(name).path
}

/// A safetensors file from a header string and data bytes (header padded as given, no alignment).
private func file(_ header: String, _ data: [UInt8]) -> [UInt8] {
    let h = Array(header.utf8)
    var out: [UInt8] = []
    var n = UInt64(h.count)
    for _ in 0..<8 { out.append(UInt8(n & 0xff)); n >>= 8 }
    return out + h + data
}

private func le32(_ x: UInt32) -> [UInt8] { (0..<4).map { UInt8((x >> (8 * UInt32($0))) & 0xff) } }

struct SafeTensorsTests {
    @Test func roundTripsEveryDtype() throws {
        let f = try NDArray(shape: [2, 3], floats: [1.5, -2, 0, 3.25, 1e-20, -7e30])
        let h = try NDArray(shape: [4], dtype: .float16)
        try h.setFloats([0.5, -1, 65504, 0.000061035156])
        let i = try NDArray(shape: [3, 1], dtype: .int32)
        try i.setInt32s([Int32.min, -1, Int32.max])
        let scalar = try NDArray(shape: [], floats: [42])
        let empty = try NDArray(shape: [0, 5], dtype: .float32)
        let path = try tempPath("all.safetensors")
        try SafeTensors.write([("z.f", f), ("a/h", h), ("m:i", i), ("s", scalar), ("e", empty)],
                              metadata: ["format": "pt", "note": "é \"quoted\""], to: path)
        let r = try SafeTensors.read(path: path)
        #expect(r.tensors.map { $0.0 } == ["a/h", "e", "m:i", "s", "z.f"])
        #expect(r.metadata == ["format": "pt", "note": "é \"quoted\""])
        let byName = Dictionary(uniqueKeysWithValues: r.tensors)
        #expect(byName["z.f"]!.dtype == .float32 && byName["z.f"]!.shape == [2, 3] && byName["z.f"]!.toFloats() == f.toFloats())
        #expect(byName["a/h"]!.dtype == .float16 && byName["a/h"]!.toFloats() == [0.5, -1, 65504, 0.000061035156])
        #expect(try byName["m:i"]!.dtype == .int32 && byName["m:i"]!.shape == [3, 1] && byName["m:i"]!.toInt32s() == [Int32.min, -1, Int32.max])
        #expect(byName["s"]!.shape == [] && byName["s"]!.toFloats() == [42])
        #expect(byName["e"]!.shape == [0, 5] && byName["e"]!.count == 0)
    }

    @Test func writtenLayout() throws {
        // Header padded with spaces to a multiple of 8, tensors sorted by name, data back to back.
        let a = try NDArray(shape: [1], floats: [1])
        let b = try NDArray(shape: [2], floats: [2, 3])
        let bytes = try SafeTensors.encode([("b", b), ("a", a)])
        var n = 0
        for k in 0..<8 { n |= Int(bytes[k]) << (8 * k) }
        #expect(n % 8 == 0)
        let header = String(decoding: bytes[8..<(8 + n)], as: UTF8.self)
        #expect(header.hasSuffix("}") || header.hasSuffix(" "))
        let json = try JSON.parse(header)
        #expect(json.objectMembers?.map { $0.0 } == ["a", "b"])
        #expect(json["a"]?["data_offsets"] == .array([.int(0), .int(4)]))
        #expect(json["b"]?["data_offsets"] == .array([.int(4), .int(12)]))
        #expect(json["b"]?["dtype"] == .string("F32"))
        #expect(json["__metadata__"] == nil)
        #expect(bytes.count == 8 + n + 12)
        #expect(Array(bytes[(8 + n)...]) == le32(Float(1).bitPattern) + le32(Float(2).bitPattern) + le32(Float(3).bitPattern))
    }

    @Test func parsesAHandBuiltFile() throws {
        // Written by hand: an I64 tensor (converted to int32), a float16 and a float32 in an order that is
        // neither the name order nor the header order, with extra whitespace and metadata.
        let header = """
        { "x": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]},
          "__metadata__": {"k": "v"},
          "ids": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]},
          "h": {"shape": [1], "dtype": "F16", "data_offsets": [24, 26]} }
        """
        var data: [UInt8] = []
        data += [5, 0, 0, 0, 0, 0, 0, 0]                      // 5
        data += [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]  // -2
        data += le32(Float(0.25).bitPattern) + le32(Float(-8).bitPattern)
        data += [0x00, 0x3c]                                  // float16 1.0
        let r = try SafeTensors.decode(file(header, data))
        #expect(r.metadata == ["k": "v"])
        #expect(r.tensors.map { $0.0 } == ["h", "ids", "x"])
        #expect(r.tensors[0].1.dtype == .float16 && r.tensors[0].1.toFloats() == [1])
        #expect(try r.tensors[1].1.dtype == .int32 && r.tensors[1].1.toInt32s() == [5, -2])
        #expect(r.tensors[2].1.toFloats() == [0.25, -8])
    }

    static let hostile: [(String, [UInt8])] = {
        let four = le32(Float(1).bitPattern)
        func hl(_ n: UInt64) -> [UInt8] { (0..<8).map { UInt8((n >> (8 * UInt64($0))) & 0xff) } }
        return [
            ("shorter than 8 bytes", [1, 0, 0]),
            ("header length beyond file", hl(64) + Array("{}".utf8)),
            ("huge header", hl(200_000_000) + Array("{}".utf8)),
            ("header length near UInt64.max", hl(UInt64.max) + Array("{}".utf8)),
            ("bad JSON", file("{\"a\": ", four)),
            ("not an object", file("[1, 2]", [])),
            ("tensor not an object", file("{\"a\": 3}", [])),
            ("unknown dtype", file("{\"a\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [0, 4]}}", four)),
            ("missing dtype", file("{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", four)),
            ("shape/byte-count mismatch", file("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}", four)),
            ("negative dimension", file("{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", four)),
            ("non-integer dimension", file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", four)),
            ("shape overflow", file("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4], \"data_offsets\": [0, 4]}}", four)),
            ("offsets out of range", file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", four)),
            ("negative offset", file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", four)),
            ("reversed offsets", file("{\"a\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 0]}}", four)),
            ("one offset", file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", four)),
            ("overlapping offsets", file("""
                {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}
                """, four + four)),
            ("gap between tensors", file("""
                {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}
                """, four + four + four)),
            ("trailing data", file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", four + four)),
            ("duplicate name", file("""
                {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}
                """, four + four)),
            ("metadata value not a string", file("{\"__metadata__\": {\"k\": 1}}", [])),
            ("I64 out of int32 range", file("{\"a\": {\"dtype\": \"I64\", \"shape\": [1], \"data_offsets\": [0, 8]}}",
                                            [0, 0, 0, 0, 1, 0, 0, 0])),
        ]
    }()

    @Test(arguments: hostile.map { $0.0 })
    func rejectsHostileFile(_ name: String) throws {
        let bytes = try #require(Self.hostile.first { $0.0 == name }?.1)
        #expect(throws: KilnError.self, "\(name)") { try SafeTensors.decode(bytes) }
        // Through the file API as well, with the path in the message.
        let path = try tempPath("hostile.\(name.replacingOccurrences(of: "/", with: "-")).safetensors")
        try AtomicFile.write(bytes, to: path)
        do { _ = try SafeTensors.read(path: path); Issue.record("\(name): no error") } catch let e as KilnError {
            #expect("\(e)".contains(path))
        }
    }

    @Test func missingFileIsAnError() {
        #expect(throws: KilnError.self) { try SafeTensors.read(path: "/nonexistent/x.safetensors") }
    }

    @Test func writeRejectsBadNames() throws {
        let a = try NDArray(shape: [1], floats: [1])
        #expect(throws: KilnError.self) { try SafeTensors.encode([("a", a), ("a", a)]) }
        #expect(throws: KilnError.self) { try SafeTensors.encode([("__metadata__", a)]) }
        #expect(throws: KilnError.self) { try SafeTensors.encode([("", a)]) }
    }
}
