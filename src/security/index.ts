// Public surface of the security stage.
export * from "./types.js";
export { Security, appendAudit, securityConfig, type SecurityConfig, type UsageLease } from "./service.js";
export { Acl, type Grant, type DocumentResolver, type SubjectKind } from "./acl.js";
export { AuditLog, redact, type AuditEvent, type AuditEntry, type VerifyResult } from "./audit.js";
export { Keys, parseExpires, hashKey, type KeyInfo, type CreatedKey } from "./keys.js";
export { MemoryLimitStore, RedisLimitStore, type LimitStore, type LimitCheck } from "./limits.js";
export { hashPassword, verifyPassword } from "./password.js";
export { Users, EVERYONE, type User } from "./users.js";
export { OidcLogin, oidcSettings, roleFor, type OidcConfig } from "./oidc.js";
