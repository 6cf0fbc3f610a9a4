import CHDF5
import Foundation
import KilnCore
import KilnGraph
import SwiftProtobuf

/// nnabla's parameter files: `nn.save_parameters` / `nn.load_parameters` in `.h5` (one float32 dataset per
/// parameter at its name's path, with `need_grad` and an `index` that keeps the order) and `.protobuf`
/// (NNablaProtoBuf's `parameter` list). Files are read whole within the memory budget and written
/// atomically; HDF5 works on memory images.
public enum NNablaParameterFile {
    /// One saved parameter.
    public struct Entry {
        public var name: String
        public var array: NDArray
        public var needGrad: Bool
    }

    public enum Format: String, Sendable { case h5, protobuf }

    public static func format(of path: String) throws -> Format {
        let ext = (path as NSString).pathExtension.lowercased()
        guard let f = Format(rawValue: ext) else {
            throw KilnError.invalidParameters("\(path): nnabla parameter files end in .h5 or .protobuf, not '.\(ext)'")
        }
        return f
    }

    /// Reads a parameter file, in the order nnabla saved it.
    public static func read(path: String) throws -> [Entry] {
        let bytes = try FileBytes.read(path: path, limit: Context.current.memoryBudget, what: "parameter file")
        do {
            switch try format(of: path) {
            case .h5: return try readH5(bytes)
            case .protobuf: return try readProtobuf(bytes)
            }
        } catch KilnError.invalidParameters(let m) { throw KilnError.invalidParameters("\(path): \(m)") }
    }

    /// Reads a parameter file's bytes (what `read(path:)` does after reading the file).
    public static func read(bytes: [UInt8], format: Format) throws -> [Entry] {
        switch format {
        case .h5: return try readH5(bytes)
        case .protobuf: return try readProtobuf(bytes)
        }
    }

    /// Writes `params` (need_grad from each variable) atomically.
    public static func save(_ params: ParameterDictionary, to path: String) throws {
        let entries = params.map { Entry(name: $0.name, array: $0.variable.data, needGrad: $0.variable.needGrad) }
        let bytes: [UInt8]
        switch try format(of: path) {
        case .h5: bytes = try h5Image(entries)
        case .protobuf:
            var proto = Nnabla_NNablaProtoBuf()
            proto.parameter = entries.map(parameterProto)
            bytes = try proto.serializedBytes()
        }
        try AtomicFile.write(bytes, to: path)
    }

    static func parameterProto(_ e: Entry) -> Nnabla_Parameter {
        var p = Nnabla_Parameter()
        p.variableName = e.name
        p.shape.dim = e.array.shape.map { Int64($0) }
        p.data = e.array.toFloats()
        p.needGrad = e.needGrad
        return p
    }

    /// Checks a stored shape (dims, count) against the memory budget and Kiln's element limit.
    static func array(_ name: String, _ dims: [Int64], _ values: [Float]?) throws -> NDArray {
        guard dims.allSatisfy({ $0 >= 0 && $0 <= Int64(Int32.max) }) else {
            throw KilnError.invalidParameters("parameter '\(name)' has shape \(dims)")
        }
        let shape = dims.map { Int($0) }
        let a = try NDArray(shape: shape, dtype: .float32)
        if let values {
            guard values.count == a.count else {
                throw KilnError.invalidParameters("parameter '\(name)' has \(values.count) values for shape \(shape)")
            }
            try a.setFloats(values, name: name)
        }
        return a
    }

    // MARK: - protobuf

    static func readProtobuf(_ bytes: [UInt8]) throws -> [Entry] {
        var options = BinaryDecodingOptions()
        options.messageDepthLimit = 64
        let proto: Nnabla_NNablaProtoBuf
        do { proto = try Nnabla_NNablaProtoBuf(serializedBytes: bytes, options: options) } catch {
            throw KilnError.invalidParameters("not an nnabla protobuf parameter file (\(error))")
        }
        return try entries(proto.parameter)
    }

    static func entries(_ parameters: [Nnabla_Parameter]) throws -> [Entry] {
        var seen = Set<String>()
        return try parameters.map { p in
            guard !p.variableName.isEmpty, seen.insert(p.variableName).inserted else {
                throw KilnError.invalidParameters("parameter name '\(p.variableName)' is empty or given twice")
            }
            return Entry(name: p.variableName, array: try array(p.variableName, p.shape.dim, p.data), needGrad: p.needGrad)
        }
    }

    // MARK: - HDF5

    /// HDF5 keeps global state: one call at a time.
    static let lock = NSLock()

    static func readH5(_ bytes: [UInt8]) throws -> [Entry] {
        // HDF5's signature, checked before the library sees the bytes.
        let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]
        guard bytes.count >= 8, Array(bytes[0..<8]) == signature else {
            throw KilnError.invalidParameters("not an HDF5 file (no HDF5 signature)")
        }
        lock.lock()
        defer { lock.unlock() }
        kiln_h5_quiet()
        return try bytes.withUnsafeBytes { raw -> [Entry] in
            let file = kiln_h5_open_image(raw.baseAddress, raw.count)
            guard file >= 0 else { throw KilnError.invalidParameters("HDF5 cannot open the file") }
            defer { kiln_h5_close(file) }
            final class Names { var list: [String] = [] }
            let names = Names()
            let status = withExtendedLifetime(names) {
                kiln_h5_visit_datasets(file, { name, context in
                    guard let name, let context else { return -1 }
                    Unmanaged<Names>.fromOpaque(context).takeUnretainedValue().list.append(String(cString: name))
                    return 0
                }, Unmanaged.passUnretained(names).toOpaque())
            }
            guard status >= 0 else { throw KilnError.invalidParameters("HDF5 cannot list the file's datasets") }
            var found: [(index: Int64, entry: Entry)] = []
            var total = CheckedInt(0)
            for name in names.list {
                var dims = [hsize_t](repeating: 0, count: 32)
                var isNumber: Int32 = 0
                let rank = kiln_h5_dataset_shape(file, name, &dims, 32, &isNumber)
                guard rank >= 0, isNumber == 1 else {
                    throw KilnError.invalidParameters("dataset '\(name)' is not an array of numbers of rank 32 or less")
                }
                let shape = dims.prefix(Int(rank)).map { Int64(clamping: $0) }
                let a = try array(name, shape, nil)
                total = total + CheckedInt(a.count) * 4
                if let budget = Context.current.memoryBudget, (try? total.get("")) ?? Int.max > budget {
                    throw KilnError.invalidParameters("its datasets take more than the memory budget of \(budget) bytes")
                }
                guard kiln_h5_read_floats(file, name, a.floats) >= 0 else {
                    throw KilnError.invalidParameters("dataset '\(name)' cannot be read as float32")
                }
                var needGrad: Int64 = 0, index: Int64 = 0
                guard kiln_h5_int_attribute(file, name, "need_grad", &needGrad) >= 0,
                      kiln_h5_int_attribute(file, name, "index", &index) >= 0 else {
                    throw KilnError.invalidParameters("dataset '\(name)': its need_grad or index attribute cannot be read")
                }
                found.append((index, Entry(name: name, array: a, needGrad: needGrad != 0)))
            }
            // nnabla's order: by `index`, then by name (the visiting order) for files without it.
            return found.enumerated().sorted { ($0.element.index, $0.offset) < ($1.element.index, $1.offset) }.map { $0.element.entry }
        }
    }

    static func h5Image(_ entries: [Entry]) throws -> [UInt8] {
        lock.lock()
        defer { lock.unlock() }
        kiln_h5_quiet()
        let file = kiln_h5_create_image()
        guard file >= 0 else { throw KilnError.invalidParameters("HDF5 cannot create a file") }
        defer { kiln_h5_close(file) }
        for (i, e) in entries.enumerated() {
            guard !e.name.isEmpty, !e.name.hasPrefix("/"), !e.name.contains("//"), e.array.dtype == .float32 else {
                throw KilnError.invalidParameters("parameter '\(e.name)' cannot be an HDF5 dataset (float32, a name without empty parts)")
            }
            let dims = e.array.shape.map { hsize_t($0) }
            guard kiln_h5_write_parameter(file, e.name, Int32(dims.count), dims, e.array.floats, e.needGrad ? 1 : 0, Int64(i)) >= 0 else {
                throw KilnError.invalidParameters("HDF5 cannot write parameter '\(e.name)' (a name that is also a group?)")
            }
        }
        let size = kiln_h5_file_image(file, nil, 0)
        guard size > 0 else { throw KilnError.invalidParameters("HDF5 cannot produce the file") }
        var bytes = [UInt8](repeating: 0, count: size)
        let written = bytes.withUnsafeMutableBytes { kiln_h5_file_image(file, $0.baseAddress, size) }
        guard written == size else { throw KilnError.invalidParameters("HDF5 cannot produce the file") }
        return bytes
    }
}
