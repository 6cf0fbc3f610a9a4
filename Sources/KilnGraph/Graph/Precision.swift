/// Storage precision of a plan's transient values (nnabla's `type_config`).
public enum Precision: String, Hashable, Sendable, CaseIterable, Codable {
    /// Every value in float32.
    case float
    /// Activations and their gradients stored as float16 (half the arena); parameters, their gradients,
    /// solver state, inputs and requested outputs stay float32, like the master copies of mixed-precision
    /// training.
    case half
}
