/// Embed.
public enum EmbeddingFunctions {
    public static let all: [any Function.Type] = []
}
