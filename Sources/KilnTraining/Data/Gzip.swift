import CKilnZlib
import Foundation
import KilnCore

/// Decompresses gzip data with zlib, refusing output beyond `limit` bytes (a hostile file cannot exhaust
/// memory).
enum Gzip {
    static func decompress(_ input: [UInt8], limit: Int = 1 << 31, name: String) throws -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw KilnError.dataset("\(name): zlib could not start")
        }
        defer { inflateEnd(&stream) }
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var status: Int32 = Z_OK
        try input.withUnsafeBytes { (inBuf: UnsafeRawBufferPointer) in
            stream.next_in = UnsafeMutablePointer(mutating: inBuf.bindMemory(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(input.count)
            repeat {
                let produced: Int = chunk.withUnsafeMutableBytes { c in
                    stream.next_out = c.bindMemory(to: Bytef.self).baseAddress
                    stream.avail_out = uInt(c.count)
                    status = inflate(&stream, Z_NO_FLUSH)
                    return c.count - Int(stream.avail_out)
                }
                guard status == Z_OK || status == Z_STREAM_END else {
                    throw KilnError.dataset("\(name): corrupt gzip data (zlib status \(status))")
                }
                out.append(contentsOf: chunk[0..<produced])
                guard out.count <= limit else { throw KilnError.dataset("\(name): decompresses to more than \(limit) bytes") }
                if produced == 0 && stream.avail_in == 0 && status != Z_STREAM_END {
                    throw KilnError.dataset("\(name): truncated gzip data")
                }
            } while status != Z_STREAM_END
        }
        return out
    }
}
