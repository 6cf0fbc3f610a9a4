/// Element types a tensor can hold. Arithmetic runs in float32; float16 is a storage type and
/// int32 carries labels and indices.
public enum DType: String, Sendable, CaseIterable, Codable {
    case float32, float16, int32

    public var byteSize: Int {
        switch self {
        case .float32, .int32: return 4
        case .float16: return 2
        }
    }
}
