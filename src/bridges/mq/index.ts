/**
 * `appactive/mq`: unit-aware message producers and consumers (reference §A.3). The shared core is
 * driver-free; each adapter takes the client objects you created, so no driver is loaded by this module.
 */
export type {
  AmqpConsumerOptions,
  AmqpDeliveryInfo,
  AmqpProducerOptions,
  AmqpPublishOptions,
  PublishResult,
} from './amqplib.js'
export {
  AmqpConsumer,
  AmqpProducer,
  createAmqpConsumer,
  createAmqpProducer,
  ROUTING_KEY_HEADER,
} from './amqplib.js'
export type {
  AddressParts,
  ConsumeDecision,
  HoldOptions,
  HoldResult,
  MessageHeaderSource,
  MessageRoute,
  MqOutcome,
  PublishDecision,
  PublishRequest,
  ReadMessage,
  ResolvedHold,
  TopicConfig,
  TopicSettings,
  TopicType,
  WaitOutcome,
} from './core.js'
export {
  AddressTemplate,
  DEAD_CODE_HEADER,
  DEAD_REASON_HEADER,
  decideConsume,
  decidePublish,
  decideWithHold,
  HoldGate,
  isHoldError,
  KeyedSerial,
  MAX_HEADER_VALUE_LENGTH,
  MqMetrics,
  MSG_ID_HEADER,
  messageHeaders,
  newMessageId,
  ORIGIN_UNIT_HEADER,
  orderingKey,
  preparePublish,
  readMessageHeaders,
  resolveHold,
  TopicTable,
} from './core.js'
export type {
  ClaimOptions,
  InboxDialect,
  InboxExecutor,
  InboxResult,
  Mysql2Queryable,
  PgQueryable,
  SqliteQueryable,
} from './inbox.js'
export {
  claimMessage,
  claimMessageSync,
  DEFAULT_INBOX_TABLE,
  inboxClaimSql,
  inboxMysql2,
  inboxPg,
  inboxSqlite,
  inboxTableSql,
  MAX_INBOX_ID_LENGTH,
} from './inbox.js'
export type {
  KafkaConsumerOptions,
  KafkaDeliveryInfo,
  KafkaHoldOptions,
  KafkaProducerOptions,
  KafkaSendOptions,
  KafkaSendResult,
} from './kafkajs.js'
export {
  createKafkaConsumer,
  createKafkaProducer,
  DEAD_OFFSET_HEADER,
  DEAD_TOPIC_HEADER,
  KafkaConsumer,
  KafkaProducer,
} from './kafkajs.js'
export type {
  NatsConsumerOptions,
  NatsDeliveryInfo,
  NatsHoldOptions,
  NatsProducerOptions,
  NatsPublishOptions,
  NatsPublishResult,
} from './nats.js'
export {
  createNatsConsumer,
  createNatsProducer,
  DEAD_SUBJECT_HEADER,
  NatsConsumer,
  NatsProducer,
} from './nats.js'
